"""SAM + NPO: NPO whose forget gradient is sharpness-aware (`cir.methods.sam`; Fan et al. 2025)."""

from __future__ import annotations

from dataclasses import dataclass

from cir.methods.npo import NPO
from cir.methods.npo import Config as NPOConfig
from cir.methods.npo import search_space as npo_search_space
from cir.methods.sam import SharpnessAware, SharpnessConfig, with_rho
from cir.registry import METHODS


@dataclass
class Config(SharpnessConfig, NPOConfig):
    """SAM + NPO settings: NPO's, and `rho`, the perturbation's radius (0 = NPO)."""


@METHODS.register(
    "sam_npo",
    Config,
    "NPO with the forget gradient taken at SAM's worst nearby weights (resists relearning)",
    search_space=with_rho(npo_search_space),
)
class SAMNPO(SharpnessAware, NPO):
    """NPO with SAM's step; the perturbation is undone before the step."""

    config: Config
