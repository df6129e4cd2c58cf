"""The disruption budget (method.md §4): stop unlearning before general ability degrades.

After every epoch the loop measures the general-text loss (or the KL to the original model) and
stops once it leaves the budget; the returned model is the last one that was within it. Only the
trained parameters are snapshotted (on CPU), not the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

BudgetMetric = Literal["general_loss", "kl"]


@dataclass(frozen=True)
class DisruptionBudget:
    """Allowed disruption: general loss <= (1 + budget) x baseline, or KL to the original <= budget."""

    metric: BudgetMetric
    budget: float  # relative rise of general loss (0.001 = 0.1%), or absolute KL in nats per token
    baseline: float  # the metric before unlearning

    @property
    def limit(self) -> float:
        """The largest allowed value of the metric."""
        return self.baseline * (1.0 + self.budget) if self.metric == "general_loss" else self.budget

    def within(self, value: float) -> bool:
        """Whether `value` of the metric is within the budget."""
        return value <= self.limit


class WeightSnapshot:
    """A CPU copy of some parameters, to return to the last in-budget weights."""

    def __init__(self, parameters: Sequence[nn.Parameter]) -> None:
        self.parameters = list(parameters)
        self.copies: list[torch.Tensor] = []
        self.save()

    def save(self) -> None:
        """Copy the current values."""
        self.copies = [p.detach().to("cpu", copy=True) for p in self.parameters]

    @torch.no_grad()
    def restore(self) -> None:
        """Write the saved values back into the parameters."""
        for parameter, copy in zip(self.parameters, self.copies, strict=True):
            parameter.copy_(copy.to(parameter.device))
