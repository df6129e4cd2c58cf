"""The disruption budget (method.md §4): unlearn as far as the budget allows, never past it.

`BudgetPolicy` is the whole contract the loop is given: the bound (general-loss rise or KL), how
often it is checked inside an epoch (on a small fixed subset of the budget text, cheap enough to run
every few steps; a breach there is confirmed on the full text before it counts) and what happens on
a breach. A breach does not end the run: the loop restores the
last weights that were within the budget, multiplies the step by `backoff_factor` and goes on, until
the step has been shrunk `max_backoffs` times (then the next breach stops it), the epoch cap, or
Ctrl-C. With `max_backoffs=0` and `check_every=0` the first epoch to leave the budget stops the run
(the paper's rule), and the returned model is the one after `last_epoch_within(history, budget)`;
only then can the bench read several budgets off one run's history (with back-off, each budget's
trajectory is its own, so the bench runs each budget separately). Only the full budget text,
measured at each epoch's end, decides which weights are kept, so the returned model is within the
budget on the text the user gave.
`EpochSnapshots` keeps CPU copies of only the trained parameters, not the whole model.
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
        return self.allows(record.disruption.value(self.metric))

    def allows(self, value: float) -> bool:
        """Whether a measured value of the metric is within the budget."""
        return value <= self.limit


@dataclass(frozen=True)
class BudgetPolicy:
    """The budget and its checks, as the loop applies them (`UnlearnConfig.budget_policy()` builds it)."""

    metric: BudgetMetric  # what is bounded: "general_loss" (relative rise) or "kl" (nats per token)
    budget: float  # the bound: 0.01 = a 1% general-loss rise, or KL in nats/token
    check_every: float = 0.25  # in-epoch checks: >= 1 a number of steps, < 1 a fraction of an epoch, 0 none
    check_texts: int = 8  # budget texts in the in-epoch check's subset (the first ones)
    max_backoffs: int = 4  # step shrinks allowed; 0 = stop at the first breach (the paper's rule)
    backoff_factor: float = 0.5  # the step is multiplied by this on each breach

    def check_interval(self, steps_per_epoch: int) -> int | None:
        """Steps between in-epoch checks, or None when only the epoch ends are checked.

        A fraction of an epoch rounds to whole steps, at least 1; an interval that reaches the
        epoch's end adds nothing to the full check made there, so it is None too.
        """
        if self.check_every <= 0:
            return None
        steps = self.check_every if self.check_every >= 1 else self.check_every * steps_per_epoch
        interval = max(1, round(steps))
        return interval if interval < steps_per_epoch else None

    def bound(self, baseline: float) -> DisruptionBudget:
        """The budget relative to `baseline`, the metric's value before unlearning (on the same texts)."""
        return DisruptionBudget(self.metric, self.budget, baseline)


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
