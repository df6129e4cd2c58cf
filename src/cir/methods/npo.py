"""NPO: Negative Preference Optimization (Zhang et al. 2024, arXiv 2404.05868; method.md §6).

Treats each forget sequence y as a dispreferred answer with no preferred one, against the original
model as the reference:

    L = -(2/β) mean_y log σ(-β (log π(y) - log π_ref(y))) + retain_weight * CE(retain batch)

At π = π_ref the forget term is (2/β) log 2 and its gradient is that of -mean_y log π(y) (gradient
ascent); as log π(y) falls below the reference the weight σ(β Δ) of each sequence decays, which is
what keeps NPO from the collapse of plain gradient ascent. The reference log-probabilities are
cached in setup. Each step is CIR's global-norm-scaled SGD step (method.md §2).
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
from cir.losses import npo, sequence_logprob
from cir.methods.base import MethodConfig
from cir.modules import select_trained
from cir.optim import weighted_step
from cir.registry import METHODS, suggest_layers

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(MethodConfig):
    """NPO settings."""

    trained_layers: list[int] | None = None  # MLPs updated; None = every layer (the loss reads the logits)
    module_patterns: list[str] | None = None  # fnmatch names overriding the built-in MLP-linear rule
    step_norm: float = 0.2  # η, the norm of each whole update (CIR's rule); tune at matched budget
    beta: float = 0.1  # inverse temperature; the NPO paper's value; β -> 0 recovers gradient ascent
    retain_weight: float = 1.0  # weight of the retain CE (the paper's NPO+RT); 0 = NPO alone

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
    """`cir tune`'s space: log-scaled step_norm, beta and retain_weight, and which layers to train."""
    return {
        "step_norm": trial.suggest_float("step_norm", 0.005, 0.5, log=True),
        "beta": trial.suggest_float("beta", 0.01, 1.0, log=True),
        "retain_weight": trial.suggest_float("retain_weight", 0.1, 10.0, log=True),
        "trained_layers": suggest_layers(trial, "trained_layers", [None, [1, 2], [0, 1, 2], [2, 3]]),
    }


@METHODS.register(
    "npo", Config, "Negative Preference Optimization against the original model", search_space=search_space
)
class NPO:
    """NPO with CIR's normalised update on the same MLP modules."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Pick the trained modules and cache the reference log π_ref(y) of every forget sequence.

        Raises:
            ModelError: if a trained layer is out of range or no module matches.
        """
        self.model, self.forget, self.retain = model, forget, retain
        self.modules = select_trained(model, self.config.trained_layers, self.config.module_patterns)
        with torch.no_grad():
            self.references = [self._logprob(batch) for batch in forget]  # (batch,) each

    def trained_parameters(self) -> list[nn.Parameter]:
        """The weights of the trained MLP modules."""
        return [m.weight for m in self.modules]

    def forget_loss(self, forget_index: int) -> torch.Tensor:
        """The NPO term on forget batch `forget_index`, attached to the graph."""
        logprob = self._logprob(self.forget[forget_index])  # (batch,)
        return npo(logprob, self.references[forget_index], self.config.beta)

    def step(self, forget_index: int, retain_index: int, epoch: int) -> dict[str, torch.Tensor]:
        """One normalised step W <- W - η G / ||G|| with G = ∇_W (NPO + retain_weight CE_retain)."""
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

    def _logprob(self, batch: Batch) -> torch.Tensor:
        """Return log π(y), the summed log-probability of each sequence's real target tokens, (batch,)."""
        return sequence_logprob(forward(self.model, batch), batch.input_ids, batch.attention_mask)
