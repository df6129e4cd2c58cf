"""Paper-style figures (matplotlib, Agg backend: no screen needed).

The bench's dual figure: left, the V metric against the general-text loss along unlearning, with
each budget as a vertical line; right, the V metric against the attack epoch. One colour per method.
"""

from __future__ import annotations

import math
from pathlib import Path

from cir.budget import budget_label
from cir.records import BenchResults
from cir.registry import ATTACKS

CHANCE = {"acc_t1": 0.25, "acc_t0": 0.25}  # four choices


def bench_plots(results: BenchResults, folder: Path) -> list[Path]:
    """Write one dual figure per (metric, budget) into `folder`; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    metric = results.config["bench"]["metric"]
    paths = []
    for name in dict.fromkeys([metric, "acc_t1"]):
        for budget in results.config["bench"]["budgets"]:
            path = folder / f"bench_{name}_budget{100 * budget:g}pct.png"
            _dual_figure(results, name, budget, path)
            paths.append(path)
    for budget in results.config["bench"]["budgets"]:
        rows = [r for r in results.table if r["budget"] == budget and r.get("probe_drops")]
        if rows and len(rows[0]["probe_drops"]) > 1:  # a matrix needs more than the headline column
            path = folder / f"probes_budget{100 * budget:g}pct.png"
            _probe_heatmap(rows, budget, path)
            paths.append(path)
    return paths


def _probe_heatmap(rows: list[dict], budget: float, path: Path) -> None:
    """Methods x probe metrics, each cell the headline drop (vs control when there is one), annotated."""
    probes = list(rows[0]["probe_drops"])
    values = [[r["probe_drops"].get(p, {}).get("estimate", float("nan")) for p in probes] for r in rows]
    headline = rows[0].get("headline", "drop")
    title = f"V {headline.replace('_', ' ')} per probe, budget {100 * budget:g}% (green: forgotten)"
    _heatmap(values, [r["method"] for r in rows], probes, title, path)


def robustness_heatmap(matrix: dict, path: Path) -> None:
    """The robustness matrix (`cir.robustness.Robustness.to_json()`): methods x attack/probe columns."""
    import matplotlib

    matplotlib.use("Agg")
    columns = matrix["columns"]
    methods = list(matrix["cells"])
    values = [[matrix["cells"][m].get(c, {}).get("estimate", float("nan")) for c in columns] for m in methods]
    title = f"V {matrix['headline'].replace('_', ' ')}, budget {100 * matrix['budget']:g}% (green: forgotten)"
    _heatmap(values, methods, columns, title, path)


def _heatmap(values: list[list[float]], rows: list[str], columns: list[str], title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(1.6 * len(columns) + 2.5, 0.5 * len(rows) + 1.8))
    largest = max((abs(v) for row in values for v in row if math.isfinite(v)), default=0.0) or 1.0
    image = axis.imshow(values, cmap="RdYlGn", vmin=-largest, vmax=largest, aspect="auto")
    axis.set_xticks(range(len(columns)), columns, rotation=25, ha="right")
    axis.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            axis.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8)
    axis.set_title(title)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _dual_figure(results: BenchResults, metric: str, budget: float, path: Path) -> None:
    import matplotlib.pyplot as plt

    bench = results.config["bench"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.get_cmap("tab10")
    for index, method in enumerate(bench["methods"]):
        runs = [r for r in results.runs if r.method == method and r.budget == budget]
        if not runs:
            continue
        colour = colours(index % 10)
        for seed, run in enumerate(runs):
            steps = run.unlearn_trajectory
            base = run.general_loss_before
            left.plot(
                [100 * (s.general_loss / base - 1) for s in steps if s.general_loss is not None],
                [s.v.metric(metric) for s in steps if s.general_loss is not None],
                color=colour,
                alpha=0.85 if seed == 0 else 0.35,
                marker=".",
                label=method if seed == 0 else None,
            )
        attack = [[point.v.metric(metric) for point in r.attack_trajectory] for r in runs]
        epochs = range(min(len(a) for a in attack))
        mean = [sum(a[e] for a in attack) / len(attack) for e in epochs]
        right.plot(list(epochs), mean, color=colour, marker=".", label=method)
    budget_metric = results.config["unlearn"].get("budget_metric")
    on_loss_axis = budget_metric != "kl"  # a KL bound is not a general-loss change: no line for it
    for budget_line in bench["budgets"] if on_loss_axis else []:
        left.axvline(
            100 * budget_line, color="grey", linestyle="--" if budget_line == budget else ":", linewidth=1
        )
    for axis in (left, right):
        if metric in CHANCE:
            axis.axhline(CHANCE[metric], color="black", linestyle=":", linewidth=1, label="chance")
        axis.set_ylabel(f"V {metric}")
        axis.grid(alpha=0.3)
    dashed = "; dashed: this budget" if on_loss_axis else ""
    left.set_xlabel(f"general-text loss change (%) along unlearning{dashed}")
    left.set_xlim(right=1.6 * 100 * max(bench["budgets"]))  # past the largest budget is off the chart
    left.set_title("unlearning")
    right.set_xlabel(getattr(ATTACKS.get(bench["attack"]).build, "trajectory_axis"))  # noqa: B009 (Attack)
    # two lines: one is wider than the panel at a long budget label
    right.set_title(f"attack on the model kept at {budget_label(budget_metric, budget)}\n(mean over seeds)")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
