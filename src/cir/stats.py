"""The bench's statistics, pure: drops, means and spreads over seeds, intervals, ratios to the best baseline.

Everything here is computed from the recorded runs alone, so any table can be rebuilt from a
results.json (`cir.report.retable`). V's numbers come from the per-fact records (`BenchRun.per_fact`):
a seed's value is the mean over the facts in V in that seed (over all its folds), the mean and std
in the table are over seeds, and the intervals resample facts (`cir.intervals`). Results written
before per-fact records fall back to each run's means. The text (markdown, tables) lives in
`cir.report`.

With a control (`ControlRun`: the same attack on the never-unlearned model), a fact's drop against
it is V(original, attacked) - V(unlearned, attacked): what unlearning removed beyond what the attack
alone teaches. It is then the headline drop, which picks the best baseline and enters the ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cir.intervals import (
    Interval,
    by_unit_means,
    mean_interval,
    paired_difference_interval,
    ratio_of_means_interval,
)
from cir.records import FACT_METRICS, LOWER_IS_BETTER, POST_ATTACK, BenchRun, ControlRun, post_attack_stage
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
    headline: str = "drop"  # the drop that ranks methods: "drop_vs_control" when the bench has a control
    # over facts: "drop", "drop_vs_control", "vs_best" (headline drop minus the best baseline's, paired),
    # "ratio_of_means" (mean headline drop / the best baseline's)
    intervals: dict[str, Interval] = field(default_factory=dict)
    # the headline drop under each probe metric (the bench metric and every extra probe's column), and
    # the worst case: the metric where the least stays forgotten (the attacker's best probe)
    probe_drops: dict[str, Interval] = field(default_factory=dict)
    worst_case: str | None = None

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
        data["headline"] = self.headline
        data["intervals"] = {key: interval.to_json() for key, interval in self.intervals.items()}
        data["probe_drops"] = {key: interval.to_json() for key, interval in self.probe_drops.items()}
        data["worst_case"] = self.worst_case
        return data


FactKey = tuple[int, str]  # (seed, fact id)


def v_values(runs: Sequence[BenchRun], stage: str, metric: str) -> dict[FactKey, float]:
    """V's `metric` at `stage` ("before", "unlearned", "post_attack") per (seed, fact), from per-fact records.

    A run without per-fact records (results written before them) gives its mean under the key
    (seed, "run <fold>"). Records without `metric` (an extra probe a merged part did not run) are left
    out, so its cells stay empty.
    """
    values = {}
    for run in runs:
        records = [r for r in run.per_fact if r.split == "V" and r.stage == stage and metric in r.scores]
        if not run.per_fact:
            values[(run.seed, f"run {run.fold}")] = run.v(stage).metric(metric)
        for record in records:
            values[(run.seed, record.fact)] = record.scores[metric]
    return values


def control_values(
    controls: Sequence[ControlRun], metric: str, stage: str = POST_ATTACK
) -> dict[FactKey, float]:
    """V's post-attack `metric` on the never-unlearned model per (seed, fact) (`stage`: an extra attack's)."""
    return {
        (c.seed, r.fact): r.scores[metric]
        for c in controls
        for r in c.per_fact
        if r.split == "V" and r.stage == stage and metric in r.scores
    }


def seed_means(values: dict[FactKey, float]) -> list[float]:
    """The mean over facts of each seed, in seed order."""
    return list(by_seed(values).values())


def by_seed(values: dict[FactKey, float]) -> dict[int, float]:
    """Seed -> the mean over that seed's facts, in seed order."""
    seeds = sorted({seed for seed, _ in values})
    return {seed: statistics.fmean(v for (s, _), v in values.items() if s == seed) for seed in seeds}


def fact_drops(
    runs: Sequence[BenchRun], metric: str, controls: Sequence[ControlRun] = (), stage: str = POST_ATTACK
) -> dict[str, dict[FactKey, float]]:
    """Per (seed, fact): "drop" = before - post-attack; with controls, "drop_vs_control" = control - post.

    Post-attack is `stage` (an extra attack's: `post_attack_stage(name)`), the control's too. Signs
    are flipped for a metric where lower is better (recall_loss), so a larger drop always means more
    forgotten.
    """
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    before, post = v_values(runs, "before", metric), v_values(runs, stage, metric)
    drops = {"drop": {k: sign * (before[k] - post[k]) for k in post if k in before}}
    control = control_values(controls, metric, stage)
    if control:
        drops["drop_vs_control"] = {k: sign * (control[k] - post[k]) for k in post if k in control}
    return drops


def by_fact(values: dict[FactKey, float]) -> dict[str, float]:
    """Each fact's mean over the seeds it was in V: the unit the intervals resample."""
    return {str(k): v for k, v in by_unit_means((fact, v) for (_, fact), v in values.items()).items()}


def drop(run: BenchRun, metric: str) -> float:
    """V's `metric` before unlearning minus post-attack (the run's means)."""
    return run.v_before.metric(metric) - run.v_post_attack.metric(metric)


def heldout_change(run: BenchRun, metric: str) -> float | None:
    """Selectivity: the other domains' `metric` at the kept epoch minus before (None without them)."""
    if run.heldout_before is None or run.heldout_unlearned is None:
        return None
    return run.heldout_unlearned.metric(metric) - run.heldout_before.metric(metric)


def columns(runs: Sequence[BenchRun], metric: str, controls: Sequence[ControlRun] = ()) -> dict[str, Stat]:
    """Each column of a row over its seeds, in the table's order.

    V's columns are per-seed means over the facts in V (all folds); the unlearning's columns (cost,
    disruption, selectivity) are one value per seed, from the seed's first run (its folds share the
    unlearning).
    """
    first = list({r.seed: r for r in reversed(runs)}.values())[::-1]  # one run per seed (fold 0)
    drops = fact_drops(runs, metric, controls)
    values: dict[str, list[Any]] = {
        **{stage: seed_means(v_values(runs, stage, metric)) for stage in STAGES},
        "drop": seed_means(drops["drop"]),
        "drop_vs_control": seed_means(drops["drop_vs_control"]) if "drop_vs_control" in drops else [None],
        # every V metric at every stage (e.g. acc_t0_unlearned), the headline one included
        **{
            f"{name}_{stage}": seed_means(v_values(runs, stage, name))
            for name in V_METRICS
            for stage in STAGES
        },
        "general_loss_change": [100 * (r.general_loss_after / r.general_loss_before - 1) for r in first],
        "heldout_change": [heldout_change(r, metric) for r in first],
        "epochs": [float(r.epochs) for r in first],
        "seconds_per_fact": [r.seconds_per_fact for r in first],
    }
    return {key: Stat.of(column) for key, column in values.items()}


def per_seed_ratios(mine: dict[int, float], best: dict[int, float]) -> list[float]:
    """Drop / the best baseline's drop on each seed both have, where the baseline's drop is > 0."""
    return [mine[s] / best[s] for s in mine if s in best and best[s] > 0]


def row_intervals(
    drops: dict[str, dict[FactKey, float]], best: dict[str, dict[FactKey, float]] | None, headline: str
) -> dict[str, Interval]:
    """Fact-level bootstrap intervals: each drop's mean, and the headline drop against the best baseline's.

    "vs_best" is the paired difference of the headline drops and "ratio_of_means" their ratio of
    means, over the facts both have.
    """
    intervals = {key: mean_interval(list(by_fact(values).values())) for key, values in drops.items()}
    if best is not None and headline in best:
        mine, theirs = by_fact(drops[headline]), by_fact(best[headline])
        shared = sorted(set(mine) & set(theirs))
        if shared:
            a, b = [mine[f] for f in shared], [theirs[f] for f in shared]
            intervals["vs_best"] = paired_difference_interval(a, b)
            intervals["ratio_of_means"] = ratio_of_means_interval(a, b)
    return intervals


def probe_metrics(runs: Sequence[BenchRun], metric: str, stage: str = POST_ATTACK) -> list[str]:
    """The bench metric, then every extra probe column of the runs' `stage` records, in record order."""
    found = dict.fromkeys([metric])
    for run in runs:
        for record in run.per_fact:
            if record.stage == stage:
                found |= dict.fromkeys(k for k in record.scores if k not in FACT_METRICS)
    return list(found)


def probe_row(
    runs: Sequence[BenchRun],
    metrics: Sequence[str],
    controls: Sequence[ControlRun],
    headline: str,
    stage: str = POST_ATTACK,
) -> tuple[dict[str, Interval], str | None]:
    """The headline drop's interval under each probe metric, and the metric where it is smallest."""
    drops = {}
    for name in metrics:
        values = fact_drops(runs, name, controls, stage).get(headline, {})
        if values:
            drops[name] = mean_interval(list(by_fact(values).values()))
    worst = min(drops, key=lambda name: drops[name].estimate, default=None)
    return drops, worst


def extra_attacks(runs: Sequence[BenchRun]) -> list[str]:
    """The extra attacks (`bench.extra_attacks`) the runs' records hold, in record order."""
    marker = post_attack_stage("")
    stages = (r.stage for run in runs for r in run.per_fact if r.stage.startswith(marker))
    return list(dict.fromkeys(stage.removeprefix(marker) for stage in stages))


def attack_probe_row(
    runs: Sequence[BenchRun], metric: str, controls: Sequence[ControlRun], headline: str
) -> tuple[dict[str, Interval], str | None]:
    """The headline drop under every probe after every attack, and the column where it is smallest.

    Columns: the bench's attack's by metric ("acc_t1", "paraphrase_acc_t1", ...), then each extra
    attack's ("quantize/acc_t1", ...). The smallest is the worst case: the attacker's best pair.
    """
    drops, _ = probe_row(runs, probe_metrics(runs, metric), controls, headline)
    for attack in extra_attacks(runs):
        stage = post_attack_stage(attack)
        more, _ = probe_row(runs, probe_metrics(runs, metric, stage), controls, headline, stage)
        drops |= {f"{attack}/{name}": interval for name, interval in more.items()}
    worst = min(drops, key=lambda name: drops[name].estimate, default=None)
    return drops, worst


def aggregate(
    runs: Sequence[BenchRun],
    methods: Sequence[str],
    budgets: Sequence[float],
    metric: str,
    controls: Sequence[ControlRun] = (),
) -> list[TableRow]:
    """One row per (budget, method): means and stds over seeds, intervals over facts, the best baseline.

    The best baseline is the method of role "baseline" (`cir.registry`) with the highest mean headline
    drop (against the control when there is one).
    """
    headline = "drop_vs_control" if control_values(controls, metric) else "drop"
    rows = []
    for budget in budgets:
        mine_runs = {name: [r for r in runs if r.method == name and r.budget == budget] for name in methods}
        drops = {name: fact_drops(mine_runs[name], metric, controls) for name in methods}
        per_seed = {name: by_seed(drops[name]["drop"]) for name in methods}  # the per-seed ratio, kept
        baselines = [n for n in methods if METHODS.get(n).role == "baseline" and drops[n][headline]]
        best = max(baselines, key=lambda n: statistics.fmean(drops[n][headline].values()), default=None)
        for name in methods:
            mine = mine_runs[name]
            ratios = per_seed_ratios(per_seed[name], per_seed[best] if best else {})
            others = drops[best] if best is not None and best != name else None
            intervals = row_intervals(drops[name], others, headline) if mine else {}
            probed, worst = attack_probe_row(mine, metric, controls, headline)
            rows.append(
                TableRow(
                    budget,
                    name,
                    len({r.seed for r in mine}),
                    columns(mine, metric, controls),
                    best,
                    Stat.of(ratios),
                    len(ratios),
                    headline,
                    intervals,
                    probed,
                    worst,
                )
            )
    return rows
