"""The bench table from runs: means over seeds, the best baseline by role, per-seed ratios."""

import pytest

from cir.records import BenchRun, FactScores
from cir.registry import METHODS
from cir.stats import Stat, aggregate, columns, drop


def scores(acc_t1):
    return FactScores(1.0, acc_t1, 0.5, 1.0)


def run(method, seed, before, post, unlearned=0.5, budget=0.01):
    return BenchRun(
        method=method,
        seed=seed,
        budget=budget,
        epochs=2,
        v_before=scores(before),
        v_unlearned=scores(unlearned),
        v_post_attack=scores(post),
        general_loss_before=2.0,
        general_loss_after=2.02,
        seconds_per_fact=1.0,
        unlearn_trajectory=[],
        attack_trajectory=[],
        post_attack_definition="best",
        stop_reasons={"unlearn": "budget", "attack": "epochs"},
    )


RUNS = [
    # CIR (headline) drops 0.4 and 0.3; its ablation 0.6 and 0.6 (an ablation is never the baseline)
    run("cir", 0, 0.9, 0.5),
    run("cir", 1, 0.9, 0.6),
    run("mlp_breaking", 0, 0.9, 0.3),
    run("mlp_breaking", 1, 0.9, 0.3),
    # baselines: rmu drops 0.2 and -0.1 (mean 0.05), grad_diff 0.1 and 0.1 (mean 0.1, the best)
    run("rmu", 0, 0.9, 0.7),
    run("rmu", 1, 0.9, 1.0),
    run("grad_diff", 0, 0.9, 0.8),
    run("grad_diff", 1, 0.9, 0.8),
]


def test_roles_come_from_the_registry():
    assert METHODS.get("cir").role == "headline" and METHODS.get("mlp_breaking").role == "ablation"
    assert {METHODS.get(n).role for n in ("rmu", "grad_diff", "npo", "circuit_breakers")} == {"baseline"}


def test_rows_take_the_best_baseline_by_mean_drop_and_ratio_per_seed():
    rows = {
        r["method"]: r
        for r in (
            row.to_json()
            for row in aggregate(RUNS, ["cir", "mlp_breaking", "rmu", "grad_diff"], [0.01], "acc_t1")
        )
    }
    assert {r["best_baseline"] for r in rows.values()} == {"grad_diff"}
    cir = rows["cir"]
    assert cir["drop"] == pytest.approx(0.35) and cir["drop_std"] == pytest.approx(0.0707, abs=1e-4)
    assert cir["ratio"] == pytest.approx((4 + 3) / 2) and cir["ratio_seeds"] == 2
    assert cir["general_loss_change"] == pytest.approx(1.0) and cir["heldout_change"] is None


def test_a_seed_where_the_baseline_kept_nothing_has_no_ratio():
    only_rmu = [r for r in RUNS if r.method in ("cir", "rmu")]
    rows = [row.to_json() for row in aggregate(only_rmu, ["cir", "rmu"], [0.01], "acc_t1")]
    (cir,) = [r for r in rows if r["method"] == "cir"]
    assert cir["best_baseline"] == "rmu" and cir["ratio_seeds"] == 1
    assert cir["ratio"] == pytest.approx(0.4 / 0.2) and cir["ratio_std"] is None


def test_one_seed_has_no_spread_and_a_missing_value_none():
    stats = columns([RUNS[0]], "acc_t1")
    assert stats["drop"] == Stat(pytest.approx(drop(RUNS[0], "acc_t1")), None)
    assert stats["heldout_change"] == Stat(None, None)  # no held-out facts in these runs
    assert Stat.of([1.0, 3.0]) == Stat(2.0, pytest.approx(2**0.5))
