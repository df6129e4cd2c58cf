"""The robustness report: methods x (attack, probe), the worst case, and what each attack does alone.

One bench runs one attack; users run one per attack (finetune, lora, benign_relearn, quantize, ...)
on the same facts, seeds and methods, and this module puts them side by side, computed from their
per-fact records only (`cir.stats`):
- each cell is a method's headline drop (against the bench's control when it has one) under one
  attack and one probe metric, with its 95% bootstrap interval over facts;
- the worst case of a method is its smallest cell: the attacker's best attack x probe pair, named;
- the lead in the worst case: the reference method (CIR when benched) at its worst cell against the
  best other method at its own worst cell, paired by fact: the difference of drops and the ratio of
  mean drops, each with its 95% interval. The rule for calling a difference: the paired
  difference's interval excludes 0. A method with unmeasured cells has a worst case that can only
  be lower, so a lead over it found on its measured cells holds;
- the control row of each (attack, probe): V on the never-unlearned model after the attack minus
  before it, i.e. how much the attack teaches V by itself (a positive control means part of any
  method's post-attack V is the attack's own teaching, which the control-corrected drop removes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cir.errors import DataError
from cir.intervals import (
    Interval,
    aligned,
    by_unit_means,
    mean_interval,
    paired_difference_interval,
    ratio_of_means_interval,
)
from cir.outputs import atomic_output_dir, write_json_atomic
from cir.records import POST_ATTACK, BenchResults, ControlRun, post_attack_stage
from cir.report import table
from cir.stats import by_fact, extra_attacks, fact_drops, probe_metrics


@dataclass
class Robustness:
    """The matrix of one budget: cells[method][(attack, probe)], each method's worst case, the controls."""

    budget: float
    headline: str  # "drop_vs_control" when every part has a control, else "drop"
    columns: list[tuple[str, str]]  # (attack, probe metric), in the parts' order
    cells: dict[str, dict[tuple[str, str], Interval]] = field(default_factory=dict)
    worst: dict[str, tuple[str, str]] = field(default_factory=dict)  # method -> its worst column
    controls: dict[tuple[str, str], Interval] = field(default_factory=dict)  # what the attack alone teaches
    # each cell's per-fact drops (the units its interval resamples), for paired comparisons
    per_fact: dict[str, dict[tuple[str, str], dict[str, float]]] = field(default_factory=dict)
    lead: WorstCaseLead | None = None  # the reference method against the best other, in the worst case

    def to_json(self) -> dict[str, Any]:
        """`{"budget", "headline", "columns", "cells", "worst", "controls"}`, columns as "attack/probe"."""

        def key(column: tuple[str, str]) -> str:
            return "/".join(column)

        return {
            "budget": self.budget,
            "headline": self.headline,
            "columns": [key(c) for c in self.columns],
            "cells": {m: {key(c): i.to_json() for c, i in row.items()} for m, row in self.cells.items()},
            "worst": {m: key(c) for m, c in self.worst.items()},
            "controls": {key(c): i.to_json() for c, i in self.controls.items()},
            "lead": self.lead.to_json() if self.lead else None,
        }


@dataclass(frozen=True)
class WorstCaseLead:
    """`method` at its worst cell minus `baseline` at its own, paired by fact; and the ratio of means."""

    method: str
    baseline: str  # the other method with the largest worst case
    difference: Interval  # mean over facts of method's drop - baseline's drop, each at its worst cell
    ratio: Interval  # mean drop of method / mean drop of baseline
    complete: bool  # whether the baseline's every cell was measured (if not, its worst can only be lower)

    @property
    def called(self) -> bool:
        """The rule for calling a difference: the paired difference's interval excludes 0."""
        return self.difference.excludes_zero

    def to_json(self) -> dict[str, Any]:
        """The fields, intervals as `Interval.to_json`, and `called`."""
        return {
            "method": self.method,
            "baseline": self.baseline,
            "difference": self.difference.to_json(),
            "ratio": self.ratio.to_json(),
            "baseline_complete": self.complete,
            "called": self.called,
        }


def worst_case_lead(matrix: Robustness, reference: str = "cir") -> WorstCaseLead | None:
    """The reference method's worst case against the best other method's, paired by fact.

    None when the reference method or every other method is missing from the matrix.
    """
    others = [m for m in matrix.worst if m != reference]
    if reference not in matrix.worst or not others:
        return None
    baseline = max(others, key=lambda m: matrix.cells[m][matrix.worst[m]].estimate)
    mine = matrix.per_fact[reference][matrix.worst[reference]]
    theirs = matrix.per_fact[baseline][matrix.worst[baseline]]
    a, b, _ = aligned(mine, theirs)
    complete = len(matrix.cells[baseline]) == len(matrix.columns)
    return WorstCaseLead(
        reference, baseline, paired_difference_interval(a, b), ratio_of_means_interval(a, b), complete
    )


def control_effect(controls: Sequence[ControlRun], metric: str, stage: str = POST_ATTACK) -> Interval | None:
    """The attack's effect on the never-unlearned model: V post-attack (`stage`) minus before, per fact."""
    before = {(c.seed, r.fact): r.scores[metric] for c in controls for r in c.per_fact if r.stage == "before"}
    after = {(c.seed, r.fact): r.scores[metric] for c in controls for r in c.per_fact if r.stage == stage}
    rises = by_unit_means(
        (fact, after[(seed, fact)] - v) for (seed, fact), v in before.items() if (seed, fact) in after
    )
    return mean_interval(list(rises.values())) if rises else None


def robustness(parts: Sequence[tuple[str, BenchResults]]) -> list[Robustness]:
    """One matrix per budget the parts share, over the methods they share.

    Raises:
        DataError: if the parts differ in facts, seeds or metric, share no method or budget, or a part
            has no per-fact records (results written before them cannot be put in the matrix).
    """
    if not parts:
        raise DataError("robustness: give at least one bench results folder")
    first_name, first = parts[0]
    bench = first.config["bench"]
    for name, part in parts:
        other = part.config["bench"]
        for key in ("metric", "seeds", "folds", "split"):
            if other.get(key) != bench.get(key):
                raise DataError(
                    f"{name}: bench.{key} is {other.get(key)!r}, {first_name} has {bench.get(key)!r}"
                )
        if part.facts != first.facts:
            raise DataError(f"{name}: {part.facts} facts, {first_name} has {first.facts}")
        if not all(run.per_fact for run in part.runs):
            raise DataError(f"{name}: runs without per-fact records; rerun the bench with this version")
    check_same_unlearning(parts)
    # every method of any part: a cell a part did not measure stays empty (and out of the worst case)
    methods = list(dict.fromkeys(m for _, p in parts for m in p.config["bench"]["methods"]))
    budgets = [b for b in bench["budgets"] if all(b in p.config["bench"]["budgets"] for _, p in parts)]
    if not budgets:
        raise DataError("robustness: the parts share no budget")
    names = [p.config["bench"]["attack"] for _, p in parts]
    headline = "drop_vs_control" if all(p.controls for _, p in parts) else "drop"
    matrices = []
    for budget in budgets:
        matrix = Robustness(budget, headline, [])
        for (folder, part), attack in zip(parts, names, strict=True):
            runs = [r for r in part.runs if r.budget == budget]
            controls = part.controls if headline == "drop_vs_control" else ()
            # the part's attack, then each extra attack it ran on the same models
            attacks = [(attack, POST_ATTACK)] + [(a, post_attack_stage(a)) for a in extra_attacks(runs)]
            for label, stage in attacks:
                metrics = probe_metrics(runs, bench["metric"], stage)
                if any((label, m) in matrix.columns for m in metrics) or names.count(label) > 1:
                    label = f"{label} ({folder})"  # two parts ran this attack: name each by its folder
                matrix.columns += [(label, m) for m in metrics]
                for method in methods:
                    mine = [r for r in runs if r.method == method]
                    row, units = matrix.cells.setdefault(method, {}), matrix.per_fact.setdefault(method, {})
                    for m in metrics:  # each cell's per-fact drops, and its interval from them
                        values = by_fact(fact_drops(mine, m, controls, stage).get(headline, {}))
                        if values:
                            units[(label, m)] = values
                            row[(label, m)] = mean_interval(list(values.values()))
                for m in metrics:
                    effect = control_effect(part.controls, m, stage)
                    if effect is not None:
                        matrix.controls[(label, m)] = effect
        matrix.cells = {method: row for method, row in matrix.cells.items() if row}
        for method, row in matrix.cells.items():
            matrix.worst[method] = min(row, key=lambda column: row[column].estimate)
        matrix.lead = worst_case_lead(matrix)
        matrices.append(matrix)
    return matrices


def check_same_unlearning(parts: Sequence[tuple[str, BenchResults]]) -> None:
    """Refuse parts whose runs of one method unlearned differently: a worst case would mix models.

    Every part re-runs the unlearning; on one machine the same seed and config repeat it bit for bit,
    but another machine's float kernels can move a general loss that sits at the budget's edge across
    it, and the run keeps another epoch. Compared per (method, seed, budget, fold): the kept epoch and
    V's mean after unlearning.

    Raises:
        DataError: naming the method, the parts and what differs.
    """
    seen: dict[tuple[str, int, float, int | None], tuple[str, int, float]] = {}  # -> (part, epochs, V)
    for name, part in parts:
        for run in part.runs:
            key = (run.method, run.seed, run.budget, run.fold)
            epochs, v = run.epochs, round(run.v_unlearned.metric(part.config["bench"]["metric"]), 9)
            first, first_epochs, first_v = seen.setdefault(key, (name, epochs, v))
            if (first_epochs, first_v) != (epochs, v):
                raise DataError(
                    f"{run.method} (seed {run.seed}, fold {run.fold}) unlearned differently in {first} "
                    f"({first_epochs} epochs kept, V {first_v:.4f}) and {name} ({epochs} epochs, V "
                    f"{v:.4f}): a worst case across them would mix two models; rerun the parts on one machine"
                )


def robustness_markdown(matrices: Sequence[Robustness]) -> str:
    """One table per budget: methods x (attack / probe), the worst case, then the controls' row."""
    lines = ["# Robustness: the headline drop under every attack and probe", ""]
    lines.append(
        "Each cell: a method's drop (against the attack on the never-unlearned model where the benches "
        "ran that control), mean over facts [95% bootstrap interval]. Worst case: the method's smallest "
        "cell, the attacker's best attack x probe pair (over the cells measured: an empty cell was not "
        "run, and the worst case can only be lower). Control: what the attack alone does to V on the "
        "never-unlearned model (after minus before)."
    )
    for matrix in matrices:
        names = ["/".join(c) for c in matrix.columns]
        rows = [
            {"method": method}
            | {n: row[c].format() if c in row else "" for n, c in zip(names, matrix.columns, strict=True)}
            | {"worst case": worst_text(matrix, method)}
            for method, row in matrix.cells.items()
        ]
        control = {"method": "control: attack alone"} | {
            n: matrix.controls[c].format() if c in matrix.controls else ""
            for n, c in zip(names, matrix.columns, strict=True)
        }
        lines += ["", f"## Budget {100 * matrix.budget:g}% ({matrix.headline.replace('_', ' ')})", ""]
        lines.append(table([*rows, control], ["method", *names, "worst case"], markdown=True))
        if matrix.lead is not None:
            lines += ["", lead_text(matrix.lead)]
    return "\n".join(lines) + "\n"


def lead_text(lead: WorstCaseLead) -> str:
    """The worst-case comparison in a sentence, with the rule's verdict."""
    verdict = "the interval excludes 0: called" if lead.called else "the interval includes 0: not called"
    caveat = "" if lead.complete else f" ({lead.baseline}'s unmeasured cells can only lower its worst case)"
    return (
        f"In the worst case, {lead.method} minus the best other method ({lead.baseline}), paired by fact: "
        f"{lead.difference.format()} ({verdict}); ratio of mean drops {lead.ratio.format()}{caveat}."
    )


def worst_text(matrix: Robustness, method: str) -> str:
    """The method's worst cell and its column; "of N of M cells" when some cells were not measured."""
    row, column = matrix.cells[method], matrix.worst[method]
    text = f"{row[column].format()} ({'/'.join(column)})"
    if len(row) < len(matrix.columns):
        text += f", of the {len(row)} of {len(matrix.columns)} cells measured"
    return text


def write_robustness(
    parts: Sequence[tuple[str, BenchResults]], out: Path, force: bool = False
) -> list[Robustness]:
    """Write robustness.json, robustness.md and a heat-map per budget into `out`, atomically.

    Raises:
        DataError: as `robustness`.
        OutputExistsError: if `out` exists and not `force`.
    """
    from cir.plots import robustness_heatmap

    matrices = robustness(parts)
    with atomic_output_dir(out, force) as staging:
        write_json_atomic(staging / "robustness.json", {"matrices": [m.to_json() for m in matrices]})
        (staging / "robustness.md").write_text(robustness_markdown(matrices), encoding="utf-8")
        for matrix in matrices:
            robustness_heatmap(matrix.to_json(), staging / f"robustness_budget{100 * matrix.budget:g}pct.png")
    return matrices
