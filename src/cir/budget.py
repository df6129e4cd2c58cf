"""The disruption budget (method.md §4): stop unlearning before general ability degrades.

After every epoch the loop measures the general-text loss (or the KL to the original model); the
model it returns is the one after `last_epoch_within(history, budget)`, the last epoch before the
first that left the budget. `cir bench` applies the same rule to one run's history at several
budgets. `EpochSnapshots` keeps CPU copies of only the trained parameters, not the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cir.errors import BudgetError
from cir.records import DisruptionMetric, EpochRecord

BudgetMetric = DisruptionMetric


def budget_label(metric: BudgetMetric | None, budget: float) -> str:
    """How a budget reads in reports and plots: "1% general-loss rise", or "KL 0.01 nats/token"."""
    return f"KL {budget:g} nats/token" if metric == "kl" else f"{100 * budget:g}% general-loss rise"


@dataclass(frozen=True)
class DisruptionBudget:
    """Allowed disruption: general loss <= (1 + budget) x baseline, or KL to the original <= budget."""

    metric: BudgetMetric
    budget: float  # relative rise of general loss (0.001 = 0.1%), or absolute KL in nats per token
    baseline: float  # the metric before unlearning

    @classmethod
    def of(cls, metric: BudgetMetric, budget: float, before: EpochRecord) -> DisruptionBudget:
        """The budget whose baseline is the metric in `before` (the record before unlearning)."""
        return cls(metric, budget, before.disruption.value(metric))

    @property
    def limit(self) -> float:
        """The largest allowed value of the metric."""
        return self.baseline * (1.0 + self.budget) if self.metric == "general_loss" else self.budget

    def within(self, record: EpochRecord) -> bool:
        """Whether the disruption measured in `record` is within the budget."""
        return record.disruption.value(self.metric) <= self.limit


def last_epoch_within(history: Sequence[EpochRecord], budget: DisruptionBudget) -> int:
    """The epoch whose weights a run held to `budget` keeps: the last one before the first outside it.

    Entry 0 (before unlearning) is always kept, so 0 means even the first epoch left the budget.
    """
    kept = 0
    for record in history[1:]:
        if not budget.within(record):
            break
        kept = record.epoch
    return kept


class EpochSnapshots:
    """CPU copies of some parameters after chosen epochs, to put the model back at one of them.

    With `keep_every_epoch=False` a new save replaces the previous one (the loop needs only the last
    kept epoch); with True every saved epoch stays (the bench returns to each budget's epoch).
    Epoch 0, the values at construction, is saved at once.
    """

    def __init__(self, parameters: Sequence[nn.Parameter], keep_every_epoch: bool = False) -> None:
        self.parameters = list(parameters)
        self.keep_every_epoch = keep_every_epoch
        self.copies: dict[int, list[torch.Tensor]] = {}
        self.save(0)

    def save(self, epoch: int) -> None:
        """Copy the current values as those after `epoch`."""
        copies = [p.detach().to("cpu", copy=True) for p in self.parameters]
        if not self.keep_every_epoch:
            self.copies.clear()
        self.copies[epoch] = copies

    @property
    def epochs(self) -> list[int]:
        """The epochs that can be restored."""
        return sorted(self.copies)

    @torch.no_grad()
    def restore(self, epoch: int) -> None:
        """Write the values saved after `epoch` back into the parameters.

        Raises:
            BudgetError: if that epoch was not saved (or a later save replaced it).
        """
        if epoch not in self.copies:
            raise BudgetError(f"no weights kept for epoch {epoch}; kept: {self.epochs}")
        for parameter, copy in zip(self.parameters, self.copies[epoch], strict=True):
            parameter.copy_(copy.to(parameter.device))
