"""MLP breaking without collapse: CIR with zero components, the ablation that isolates the collapse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cir.methods.cir import CIR
from cir.methods.cir import Config as CIRConfig
from cir.methods.cir import search_space as cir_search_space
from cir.modules import ModelShape
from cir.registry import METHODS

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(CIRConfig):
    """CIR's settings with no direction collapsed (k_act = k_grad = 0)."""

    k_act: int = 0  # no input-side collapse
    k_grad: int = 0  # no output-gradient-side collapse


def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
    """`cir tune`'s space: CIR's, with k_act and k_grad held at 0."""
    return {**cir_search_space(trial, shape, components=False), "k_act": 0, "k_grad": 0}


METHODS.register(
    "mlp_breaking",
    Config,
    "CIR's loss and update with nothing collapsed (the ablation)",
    search_space=search_space,
    role="ablation",
)(CIR)
