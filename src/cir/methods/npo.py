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
from transformers import PreTrainedModel

from cir.config import require
from cir.data.batches import Batch
from cir.hooks import full_logits
from cir.losses import npo, sequence_logprob
from cir.methods.grad_diff import Config as GradDiffConfig
from cir.methods.grad_diff import GradDiff
from cir.methods.grad_diff import search_space as grad_diff_search_space
from cir.modules import ModelShape
from cir.registry import METHODS

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(GradDiffConfig):
    """NPO settings."""

    beta: float = 0.1  # inverse temperature; the NPO paper's value; β -> 0 recovers gradient ascent

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        super().__post_init__()
        require(self, "method", [("beta", "> 0", self.beta > 0)])


def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
    """`cir tune`'s space: Gradient Difference's plus a log-scaled beta."""
    return {**grad_diff_search_space(trial, shape), "beta": trial.suggest_float("beta", 0.01, 1.0, log=True)}


@METHODS.register(
    "npo", Config, "Negative Preference Optimization against the original model", search_space=search_space
)
class NPO(GradDiff):
    """Gradient Difference with NPO's forget term (NPO+RT in the NPO paper; retain_weight 0 = NPO alone)."""

    config: Config

    def setup(self, model: PreTrainedModel, forget: Sequence[Batch], retain: Sequence[Batch]) -> None:
        """Pick the trained modules and cache the reference log π_ref(y) of every forget sequence.

        Raises:
            ModelError: if a trained layer is out of range or no module matches.
        """
        super().setup(model, forget, retain)
        with torch.no_grad():
            self.references = [self._logprob(batch) for batch in forget]  # (batch,) each

    def forget_loss(self, forget_index: int) -> torch.Tensor:
        """The NPO term on forget batch `forget_index`, attached to the graph."""
        logprob = self._logprob(self.forget[forget_index])  # (batch,)
        return npo(logprob, self.references[forget_index], self.config.beta)

    def _logprob(self, batch: Batch) -> torch.Tensor:
        """Return log π(y), the summed log-probability of each sequence's real target tokens, (batch,)."""
        return sequence_logprob(full_logits(self.model, batch), batch.input_ids, batch.attention_mask)
