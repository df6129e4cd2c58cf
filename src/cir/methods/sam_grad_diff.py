"""SAM + Gradient Difference: its forget gradient taken at SAM's worst nearby weights (`cir.methods.sam`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cir.methods.grad_diff import Config as GradDiffConfig
from cir.methods.grad_diff import GradDiff
from cir.methods.grad_diff import search_space as grad_diff_search_space
from cir.methods.sam import SharpnessAware, check_rho, suggest_rho
from cir.modules import ModelShape
from cir.registry import METHODS

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(GradDiffConfig):
    """SAM + Gradient Difference settings: Gradient Difference's, and the perturbation's radius."""

    rho: float = 0.01  # ||ε|| over all trained weights; 0 = Gradient Difference

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        super().__post_init__()
        check_rho(self)


def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
    """`cir tune`'s space: Gradient Difference's plus a log-scaled rho."""
    return {**grad_diff_search_space(trial, shape), "rho": suggest_rho(trial)}


@METHODS.register(
    "sam_grad_diff",
    Config,
    "Gradient Difference with the forget gradient taken at SAM's worst nearby weights",
    search_space=search_space,
)
class SAMGradDiff(SharpnessAware, GradDiff):
    """Gradient Difference with SAM's step; the perturbation is undone before the step."""

    config: Config
