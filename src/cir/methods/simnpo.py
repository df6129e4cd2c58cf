"""SimNPO: reference-free, length-normalised NPO (Fan et al. 2024, arXiv 2410.07163; method.md §6).

Replaces NPO's reference log-ratio with the length-normalised log-probability and a margin:

    L = -(2/β) mean_y log σ(-(β/|y|) log π(y) - γ) + retain_weight * CE(retain batch)

with |y| the number of real target tokens of sequence y (padding excluded), so long and short forget
texts weigh alike and no reference model is needed. Each step is CIR's global-norm-scaled SGD step
(method.md §2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import PreTrainedModel

from cir.config import require
from cir.data.batches import Batch
from cir.hooks import forward, forward_cross_entropy
from cir.losses import sequence_logprob, simnpo, target_mask
from cir.methods.base import MethodConfig
from cir.modules import select_trained
from cir.optim import weighted_step
from cir.registry import METHODS, suggest_layers

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(MethodConfig):
    """SimNPO settings."""

    trained_layers: list[int] | None = None  # MLPs updated; None = every layer (the loss reads the logits)
    module_patterns: list[str] | None = None  # fnmatch names overriding the built-in MLP-linear rule
    step_norm: float = 0.2  # η, the norm of each whole update (CIR's rule); tune at matched budget
    beta: float = 2.5  # inverse temperature on the mean token log-probability (SimNPO's suggested value)
    gamma: float = 0.0  # reward margin γ, added after the β scaling; 0 = none (SimNPO's suggested value)
    retain_weight: float = 1.0  # weight of the retain CE; 0 = SimNPO alone

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        require(
            self,
            "method",
            [
                ("beta", "> 0", self.beta > 0),
                ("step_norm", "> 0", self.step_norm > 0),
                ("retain_weight", ">= 0", self.retain_weight >= 0),
            ],
        )


def search_space(trial: Trial) -> dict[str, Any]:
    """`cir tune`'s space: log-scaled step_norm, beta and retain_weight, gamma, and the trained layers."""
    return {
        "step_norm": trial.suggest_float("step_norm", 0.005, 0.5, log=True),
        "beta": trial.suggest_float("beta", 0.5, 10.0, log=True),
        "gamma": trial.suggest_float("gamma", 0.0, 2.0),
        "retain_weight": trial.suggest_float("retain_weight", 0.1, 10.0, log=True),
        "trained_layers": suggest_layers(trial, "trained_layers", [None, [1, 2], [0, 1, 2], [2, 3]]),
    }


@METHODS.register("simnpo", Config, "reference-free, length-normalised NPO", search_space=search_space)
class SimNPO:
    """SimNPO with CIR's normalised update on the same MLP modules."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Pick the trained modules and freeze every other parameter (no reference to cache).

        Raises:
            ModelError: if a trained layer is out of range or no module matches.
        """
        self.model, self.forget, self.retain = model, forget, retain
        self.modules = select_trained(model, self.config.trained_layers, self.config.module_patterns)

    def trained_parameters(self) -> list[nn.Parameter]:
        """The weights of the trained MLP modules."""
        return [m.weight for m in self.modules]

    def forget_loss(self, forget_index: int) -> torch.Tensor:
        """The SimNPO term on forget batch `forget_index`, attached to the graph."""
        batch = self.forget[forget_index]
        logprob = sequence_logprob(forward(self.model, batch), batch.input_ids, batch.attention_mask)
        lengths = target_mask(batch.attention_mask).sum(dim=-1).clamp(min=1)  # (batch,) real target tokens
        return simnpo(logprob, lengths, self.config.beta, self.config.gamma)

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, torch.Tensor]:
        """One normalised step W <- W - η G / ||G|| with G = ∇_W (SimNPO + retain_weight CE_retain)."""
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

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Nothing to refresh between epochs."""
        return {}
