"""The bench's statistics, pure: per-run drops, means and spreads over seeds, ratios to the best baseline.

Everything here is computed from `BenchRun` records alone, so any table can be rebuilt from a
results.json (`cir.report.retable`). The text (markdown, tables) lives in `cir.report`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cir.records import BenchRun
from cir.registry import METHODS

V_METRICS = ("answer_prob", "acc_t1", "acc_t0")  # the bench reports each at every stage
STAGES = ("before", "unlearned", "post_attack")


@dataclass(frozen=True)
class Stat:
    """A number over seeds: its mean and standard deviation (None with one seed, or no values)."""

    mean: float | None
    std: float | None

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        """Mean and std of `values`; all None if any is None (e.g. a bench without held-out facts)."""
        if not values or None in values:
            return cls(None, None)
        numbers = [float(v) for v in values if v is not None]
        return cls(statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None)


@dataclass(frozen=True)
class TableRow:
    """One (budget, method) row of the bench table; `to_json` is its flat results.json form."""

    budget: float
    method: str
    seeds: int
    stats: dict[str, Stat]  # the row's columns in order: V at each stage, drop, cost, selectivity...
    best_baseline: str | None
    ratio: Stat = field(default_factory=lambda: Stat(None, None))  # drop / best baseline's, per seed
    ratio_seeds: int = 0  # seeds with a ratio (the baseline's drop > 0)

    def to_json(self) -> dict[str, Any]:
        """`{"budget", "method", "seeds", <key>, <key>_std ..., "best_baseline", "ratio_seeds",
        "ratio", "ratio_std"}`.
        """  # noqa: D205
        data: dict[str, Any] = {"budget": self.budget, "method": self.method, "seeds": self.seeds}
        for key, stat in self.stats.items():
            data[key], data[f"{key}_std"] = stat.mean, stat.std
        data["best_baseline"] = self.best_baseline
        data["ratio_seeds"] = self.ratio_seeds
        data["ratio"], data["ratio_std"] = self.ratio.mean, self.ratio.std
        return data


def drop(run: BenchRun, metric: str) -> float:
    """V's `metric` before unlearning minus post-attack."""
    return run.v_before.metric(metric) - run.v_post_attack.metric(metric)


def heldout_change(run: BenchRun, metric: str) -> float | None:
    """Selectivity: the other domains' `metric` at the kept epoch minus before (None without them)."""
    if run.heldout_before is None or run.heldout_unlearned is None:
        return None
    return run.heldout_unlearned.metric(metric) - run.heldout_before.metric(metric)


def columns(runs: Sequence[BenchRun], metric: str) -> dict[str, Stat]:
    """Each column of a row over its runs (seeds), in the table's order."""
    values: dict[str, list[Any]] = {
        **{stage: [r.v(stage).metric(metric) for r in runs] for stage in STAGES},
        "drop": [drop(r, metric) for r in runs],
        # every V metric at every stage (e.g. acc_t0_unlearned), the headline one included
        **{
            f"{name}_{stage}": [r.v(stage).metric(name) for r in runs]
            for name in V_METRICS
            for stage in STAGES
        },
        "general_loss_change": [100 * (r.general_loss_after / r.general_loss_before - 1) for r in runs],
        "heldout_change": [heldout_change(r, metric) for r in runs],
        "epochs": [float(r.epochs) for r in runs],
        "seconds_per_fact": [r.seconds_per_fact for r in runs],
    }
    return {key: Stat.of(column) for key, column in values.items()}


def per_seed_ratios(mine: dict[int, float], best: dict[int, float]) -> list[float]:
    """Drop / the best baseline's drop on each seed both have, where the baseline's drop is > 0."""
    return [mine[s] / best[s] for s in mine if s in best and best[s] > 0]


def aggregate(
    runs: Sequence[BenchRun], methods: Sequence[str], budgets: Sequence[float], metric: str
) -> list[TableRow]:
    """One row per (budget, method): mean and std over seeds, the drop, and the ratio to the best baseline.

    The best baseline is the method of role "baseline" (`cir.registry`) with the highest mean drop.
    """
    rows = []
    for budget in budgets:
        drops = {
            name: {r.seed: drop(r, metric) for r in runs if r.method == name and r.budget == budget}
            for name in methods
        }
        baselines = [n for n in methods if METHODS.get(n).role == "baseline" and drops[n]]
        best = max(baselines, key=lambda n: statistics.fmean(drops[n].values()), default=None)
        for name in methods:
            mine = [r for r in runs if r.method == name and r.budget == budget]
            ratios = per_seed_ratios(drops[name], drops[best] if best else {})
            rows.append(
                TableRow(budget, name, len(mine), columns(mine, metric), best, Stat.of(ratios), len(ratios))
            )
    return rows
