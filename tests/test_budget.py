"""The budget rule and the snapshot store: the last epoch before the first over budget, restored exactly."""

import pytest
import torch
from torch import nn

from cir.budget import DisruptionBudget, EpochSnapshots, last_epoch_within
from cir.errors import BudgetError, ConfigError
from cir.records import Disruption, EpochRecord, FactScores

SCORES = FactScores(1.0, 0.9, 0.8, 0.2)


def history(losses, kls=None):
    kls = kls or [None] * len(losses)
    return [EpochRecord(e, SCORES, Disruption(loss, kl)) for e, (loss, kl) in enumerate(zip(losses, kls))]


def test_last_epoch_within_stops_at_the_first_epoch_over_the_limit():
    records = history([2.0, 2.01, 2.03, 2.015, 2.0])  # epoch 3 is back within 1%, but too late
    budget = DisruptionBudget.of("general_loss", 0.01, records[0])
    assert budget.limit == pytest.approx(2.02)
    assert last_epoch_within(records, budget) == 1
    assert last_epoch_within(records, DisruptionBudget.of("general_loss", 0.02, records[0])) == 4
    assert last_epoch_within(records, DisruptionBudget.of("general_loss", 0.001, records[0])) == 0
    assert last_epoch_within(records[:1], budget) == 0


def test_kl_budget_is_absolute_and_needs_the_kl():
    records = history([2.0, 2.5, 3.0], kls=[0.0, 0.004, 0.02])
    budget = DisruptionBudget.of("kl", 0.01, records[0])
    assert budget.limit == 0.01 and last_epoch_within(records, budget) == 1
    with pytest.raises(ConfigError, match="KL was not measured"):
        DisruptionBudget.of("kl", 0.01, history([2.0])[0])


def test_snapshots_restore_any_kept_epoch_or_only_the_last():
    weight = nn.Parameter(torch.zeros(3))
    every, last = EpochSnapshots([weight], keep_every_epoch=True), EpochSnapshots([weight])
    for epoch in (1, 2):
        with torch.no_grad():
            weight.add_(1.0)
        every.save(epoch)
        last.save(epoch)
    assert every.epochs == [0, 1, 2] and last.epochs == [2]
    every.restore(1)
    assert torch.equal(weight, torch.ones(3))
    last.restore(2)
    assert torch.equal(weight, torch.full((3,), 2.0))
    with pytest.raises(BudgetError, match=r"no weights kept for epoch 1; kept: \[2\]"):
        last.restore(1)
