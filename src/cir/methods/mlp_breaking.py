"""MLP breaking without collapse: CIR with zero components, the ablation that isolates the collapse."""

from __future__ import annotations

from dataclasses import dataclass

from cir.methods.cir import CIR
from cir.methods.cir import Config as CIRConfig
from cir.registry import METHODS


@dataclass
class Config(CIRConfig):
    """CIR's settings with no direction collapsed (k_act = k_grad = 0)."""

    k_act: int = 0  # no input-side collapse
    k_grad: int = 0  # no output-gradient-side collapse


METHODS.register("mlp_breaking", Config, "CIR's loss and update with nothing collapsed (the ablation)")(CIR)
