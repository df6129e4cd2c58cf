"""SimNPO: reference-free, length-normalised NPO (Fan et al. 2024, arXiv 2410.07163; method.md §6).

Replaces NPO's reference log-ratio with the length-normalised log-probability and a margin:

    L = -(2/β) mean_y log σ(-(β/|y|) log π(y) - γ) + retain_weight * CE(retain batch)

with |y| the number of real target tokens of sequence y (padding excluded), so long and short forget
texts weigh alike and no reference model is needed. Each step is CIR's global-norm-scaled SGD step
(method.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from cir.config import require
from cir.hooks import full_logits
from cir.losses import sequence_logprob, simnpo, target_mask
from cir.methods.grad_diff import Config as GradDiffConfig
from cir.methods.grad_diff import GradDiff
from cir.methods.grad_diff import search_space as grad_diff_search_space
from cir.modules import ModelShape
from cir.registry import METHODS

if TYPE_CHECKING:
    from optuna import Trial


@dataclass
class Config(GradDiffConfig):
    """SimNPO settings."""

    beta: float = 2.5  # inverse temperature on the mean token log-probability (SimNPO's suggested value)
    gamma: float = 0.0  # reward margin γ, added after the β scaling; 0 = none (SimNPO's suggested value)

    def __post_init__(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: naming every field out of range.
        """
        super().__post_init__()
        require(self, "method", [("beta", "> 0", self.beta > 0)])


def search_space(trial: Trial, shape: ModelShape) -> dict[str, Any]:
    """`cir tune`'s space: Gradient Difference's plus a log-scaled beta and a margin gamma."""
    return {
        **grad_diff_search_space(trial, shape),
        "beta": trial.suggest_float("beta", 0.5, 10.0, log=True),
        "gamma": trial.suggest_float("gamma", 0.0, 2.0),
    }


@METHODS.register("simnpo", Config, "reference-free, length-normalised NPO", search_space=search_space)
class SimNPO(GradDiff):
    """Gradient Difference with SimNPO's forget term (retain_weight 0 = SimNPO alone)."""

    config: Config

    def forget_loss(self, forget_index: int) -> torch.Tensor:
        """The SimNPO term on forget batch `forget_index`, attached to the graph."""
        batch = self.forget[forget_index]
        logprob = sequence_logprob(full_logits(self.model, batch), batch.input_ids, batch.attention_mask)
        lengths = target_mask(batch.attention_mask).sum(dim=-1).clamp(min=1)  # (batch,) real target tokens
        return simnpo(logprob, lengths, self.config.beta, self.config.gamma)
