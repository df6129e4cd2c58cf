"""SAM + NPO: NPO whose forget gradient is sharpness-aware (`cir.methods.sam`; Fan et al. 2025)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cir.methods.npo import NPO
from cir.methods.npo import Config as NPOConfig
from cir.methods.npo import search_space as npo_search_space
from cir.methods.sam import SharpnessAware, check_rho, suggest_rho
from cir.modules import ModelShape
from cir.registry import METHODS

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(NPOConfig):
    """SAM + NPO settings: NPO's, and the radius of the sharpness-aware perturbation."""

    rho: float = 0.01  # ||ε|| over all trained weights; 0 = NPO

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        super().__post_init__()
        check_rho(self)


def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
    """`cir tune`'s space: NPO's plus a log-scaled rho."""
    return {**npo_search_space(trial, shape), "rho": suggest_rho(trial)}


@METHODS.register(
    "sam_npo",
    Config,
    "NPO with the forget gradient taken at SAM's worst nearby weights (resists relearning)",
    search_space=search_space,
)
class SAMNPO(SharpnessAware, NPO):
    """NPO with SAM's step; the perturbation is undone before the step."""

    config: Config
