"""The attacker's best per fact: one epoch for the whole eval set, each fact's smoothed value there."""

import pytest

from cir.attacks.base import best_epoch, post_attack_per_fact, post_attack_scores
from cir.records import FACT_METRICS, AttackEpoch, FactTable


def table(acc_t1, recall_loss):
    """A per-fact table whose other metrics copy acc_t1."""
    values = {name: tuple(acc_t1) for name in FACT_METRICS}
    values["recall_loss"] = tuple(recall_loss)
    return FactTable(values)


HISTORY = [
    AttackEpoch.of(0, table([0.2, 0.4], [3.0, 2.0]), None, 0.0),
    AttackEpoch.of(1, table([0.9, 0.1], [1.0, 2.0]), 1.0, 1.0),  # best acc_t1 mean (0.5) with window 1
    AttackEpoch.of(2, table([0.3, 0.6], [2.0, 0.5]), 1.0, 2.0),  # best recall_loss mean (1.25)
]


def test_each_fact_takes_its_value_at_the_epoch_the_mean_is_best():
    epochs, per_fact = post_attack_per_fact(HISTORY, window=1)
    assert epochs["acc_t1"] == 1 and epochs["recall_loss"] == 2
    assert per_fact is not None
    assert per_fact.values["acc_t1"] == (0.9, 0.1)  # not each fact's own max (0.9, 0.6)
    assert per_fact.values["recall_loss"] == (2.0, 0.5)
    assert per_fact.means() == post_attack_scores(HISTORY, 1)


def test_the_window_smooths_each_fact_as_it_smooths_the_mean():
    epochs, per_fact = post_attack_per_fact(HISTORY, window=2)
    assert epochs["acc_t1"] == 2  # means 0.3, 0.4, 0.475
    assert per_fact is not None
    assert per_fact.values["acc_t1"] == pytest.approx((0.6, 0.35))
    assert per_fact.means().acc_t1 == pytest.approx(post_attack_scores(HISTORY, 2).acc_t1)


def test_ties_go_to_the_first_epoch_and_missing_tables_give_none():
    assert best_epoch([0.5, 0.7, 0.7], 1) == 1
    bare = [AttackEpoch(e.epoch, e.facts, e.train_loss, e.seconds) for e in HISTORY]
    epochs, per_fact = post_attack_per_fact(bare, window=1)
    assert per_fact is None and epochs["acc_t1"] == 1


def test_a_table_refuses_missing_metrics_or_ragged_columns():
    with pytest.raises(ValueError, match="every metric"):
        FactTable({"acc_t1": (0.5,)})
    values = {name: (0.5, 0.5) for name in FACT_METRICS}
    values["acc_t0"] = (1.0,)
    with pytest.raises(ValueError, match="every metric"):
        FactTable(values)
    good = table([0.1, 0.3], [1.0, 2.0])
    assert FactTable.from_json(good.to_json()) == good
    assert good.subset([1]).row(0) == {**dict.fromkeys(FACT_METRICS, 0.3), "recall_loss": 2.0}
