"""SAM + Gradient Difference: its forget gradient taken at SAM's worst nearby weights (`cir.methods.sam`)."""

from __future__ import annotations

from dataclasses import dataclass

from cir.methods.grad_diff import Config as GradDiffConfig
from cir.methods.grad_diff import GradDiff
from cir.methods.grad_diff import search_space as grad_diff_search_space
from cir.methods.sam import SharpnessAware, SharpnessConfig, with_rho
from cir.registry import METHODS


@dataclass
class Config(SharpnessConfig, GradDiffConfig):
    """SAM + Gradient Difference settings: its own, and `rho`, the perturbation's radius (0 = none)."""


@METHODS.register(
    "sam_grad_diff",
    Config,
    "Gradient Difference with the forget gradient taken at SAM's worst nearby weights",
    search_space=with_rho(grad_diff_search_space),
)
class SAMGradDiff(SharpnessAware, GradDiff):
    """Gradient Difference with SAM's step; the perturbation is undone before the step."""

    config: Config
