"""The typed records read back what they write, and refuse a budget metric that was not measured."""

import json

import pytest

from cir.errors import ConfigError
from cir.records import BackOff, BenchRun, Disruption, EpochRecord, FactScores, TrajectoryPoint

SCORES = FactScores(1.0, 0.75, 0.5, 0.25)


def through_json(data):
    return json.loads(json.dumps(data))


def test_fact_scores_and_trajectories_round_trip_through_json():
    assert FactScores.from_json(through_json(SCORES.to_json())) == SCORES
    point = TrajectoryPoint(3, SCORES, 2.5)
    assert TrajectoryPoint.from_json(through_json(point.to_json())) == point
    attack_point = TrajectoryPoint(1, SCORES)
    assert "general_loss" not in attack_point.to_json()
    assert TrajectoryPoint.from_json(through_json(attack_point.to_json())) == attack_point


def test_bench_run_round_trips_with_and_without_heldout():
    run = BenchRun(
        "cir",
        1,
        0.01,
        4,
        SCORES,
        SCORES,
        SCORES,
        2.0,
        2.01,
        0.5,
        [TrajectoryPoint(0, SCORES, 2.0)],
        [TrajectoryPoint(0, SCORES)],
        "best",
        {"unlearn": "budget", "attack": None},
    )
    assert BenchRun.from_json(through_json(run.to_json())) == run
    held = BenchRun(**{**run.__dict__, "heldout_before": SCORES, "heldout_unlearned": SCORES})
    assert BenchRun.from_json(through_json(held.to_json())) == held


def test_epoch_record_writes_its_back_offs():
    backoff = BackOff(2, 12, "in_epoch", 2.05, 2.02, 8, 0.5)
    record = EpochRecord(2, SCORES, Disruption(2.01), {"forget_loss": 0.3}, 9.0, 1.5, 0.5, False, (backoff,))
    data = through_json(record.to_json())
    assert data["backoffs"] == [backoff.to_json()] and BackOff.from_json(data["backoffs"][0]) == backoff
    assert (data["check_seconds"], data["step_scale"], data["rolled_back"]) == (1.5, 0.5, False)


def test_a_kl_budget_needs_the_kl():
    assert Disruption(2.0, 0.01).value("kl") == 0.01 and Disruption(2.0).value("general_loss") == 2.0
    with pytest.raises(ConfigError, match="KL was not measured"):
        Disruption(2.0).value("kl")
    with pytest.raises(ConfigError, match="unknown fact metric 'acc'"):
        SCORES.metric("acc")
