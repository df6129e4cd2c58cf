"""Gradient Difference (method.md §6): ascend the forget cross-entropy, descend the retain one.

Each step is CIR's update rule (method.md §2), one global-norm-scaled SGD step, on the gradient of

    L = -CE(forget batch) + retain_weight * CE(retain batch)

so `step_norm` is the one step-size knob, comparable across methods. Both forward passes are whole
(the loss reads the logits), so every MLP can be trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel

from cir.config import require
from cir.data.batches import Batch
from cir.hooks import forward_cross_entropy
from cir.methods.base import MethodConfig, MLPMethod
from cir.modules import ModelShape, select_trained
from cir.optim import weighted_step
from cir.registry import METHODS
from cir.space import layer_windows, suggest_layers, suggest_step_norm

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(MethodConfig):
    """Gradient Difference settings."""

    trained_layers: list[int] | None = None  # MLPs updated; None = every layer (the loss reads the logits)
    module_patterns: list[str] | None = None  # fnmatch names overriding the built-in MLP-linear rule
    step_norm: float = 0.2  # η, the norm of each whole update (CIR's rule); tune at matched budget
    retain_weight: float = 1.0  # weight of the retain CE; 0 = pure gradient ascent

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "method",
            [("step_norm", "> 0", self.step_norm > 0), ("retain_weight", ">= 0", self.retain_weight >= 0)],
        )


def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
    """`cir tune`'s space: log-scaled step_norm and retain_weight; all layers or a window (`cir.space`)."""
    return {
        "step_norm": suggest_step_norm(trial),
        "retain_weight": trial.suggest_float("retain_weight", 0.1, 10.0, log=True),
        "trained_layers": suggest_layers(trial, "trained_layers", [None, *layer_windows(shape)]),
    }


@METHODS.register(
    "grad_diff", Config, "gradient ascent on forget text, descent on retain text", search_space=search_space
)
class GradDiff(MLPMethod):
    """Gradient Difference with CIR's normalised update on the same MLP modules."""

    config: Config

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Pick the trained modules and freeze every other parameter (nothing else to cache).

        Raises:
            ModelError: if a trained layer is out of range or no module matches.
        """
        self.model, self.forget, self.retain = model, forget, retain
        self.modules = select_trained(model, self.config.trained_layers, self.config.module_patterns)

    def forget_loss(self, forget_index: int) -> torch.Tensor:
        """-CE(forget batch `forget_index`), attached to the graph: lower means more forgotten."""
        return -forward_cross_entropy(self.model, self.forget[forget_index])

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, torch.Tensor]:
        """One normalised step W <- W - η G / ||G|| with G = ∇_W (-CE_forget + retain_weight CE_retain)."""
        return weighted_step(
            self.modules,
            [
                ("forget_loss", 1.0, lambda: self.forget_loss(forget_index)),
                (
                    "retain_loss",
                    self.config.retain_weight,
                    lambda: forward_cross_entropy(self.model, self.retain[retain_index]),
                ),
            ],
            self.config.step_norm,
        )
