"""Readable results: plain-text and Markdown tables of the bench and of runs, and the results files.

The statistics behind the bench's table are `cir.stats`' (pure functions of the recorded runs);
`retable` rebuilds a results folder's table and Markdown from its recorded runs. The text
the command line prints for each command's result (`demo_build_text`, `unlearn_text`, ...) is
formatted here too, so the CLI only parses and calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cir.budget import budget_label
from cir.errors import DataError
from cir.files import read_text
from cir.intervals import Interval
from cir.outputs import write_json_atomic
from cir.records import AttackResult, BenchResults, BenchRun, ControlRun, RunReport
from cir.stats import STAGES, V_METRICS, aggregate

if TYPE_CHECKING:
    from cir.registry import Registry
    from cir.unlearn import UnlearnResult


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else str(value)


def _markdown_cell(text: str) -> str:
    return " ".join(text.splitlines()).replace("|", "\\|")


def table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: int = 3, markdown: bool = False
) -> str:
    """Format `rows` (dicts) as an aligned text table, or a Markdown table with `markdown`.

    In a Markdown table a cell's line breaks become spaces and its pipes are escaped with a backslash, so
    a text cell (a prompt, a model's completion) cannot break the table's rows or columns.
    """
    cells = [[_cell(row.get(c), digits) for c in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        return "\n".join(lines + ["| " + " | ".join(_markdown_cell(c) for c in r) + " |" for r in cells])
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    numeric = [[isinstance(row.get(c), (int, float)) for c in columns] for row in rows]
    lines += [
        "  ".join(
            v.rjust(w) if is_number else v.ljust(w) for v, w, is_number in zip(r, widths, kinds, strict=True)
        )
        for r, kinds in zip(cells, numeric, strict=True)
    ]
    return "\n".join(lines)


def _pm(row: Mapping[str, Any], key: str, digits: int = 3) -> str:
    value, spread = row[key], row[f"{key}_std"]
    if value is None:
        return "n/a"
    return f"{value:.{digits}f} ± {spread:.{digits}f}" if spread is not None else f"{value:.{digits}f}"


def _ratio_cell(row: Mapping[str, Any]) -> str:
    """The ratio's mean ± std, and on how many of the row's seeds when the baseline kept no drop on some."""
    cell, counted = _pm(row, "ratio", 2), row.get("ratio_seeds")  # absent from tables written before it
    if row["ratio"] is not None and counted is not None and counted < row["seeds"]:
        cell += f" ({counted} of {row['seeds']} seeds)"
    return cell


def _interval_cell(row: Mapping[str, Any], key: str, digits: int = 3) -> str:
    """The row's interval `key` as "estimate [low, high]", "" when the row has none."""
    data = row.get("intervals", {}).get(key)
    return Interval.from_json(data).format(digits) if data is not None else ""


def _worst_cell(row: Mapping[str, Any]) -> str:
    """The row's worst-case drop and the probe it is under."""
    worst = row.get("worst_case")
    if worst is None:
        return ""
    return f"{Interval.from_json(row['probe_drops'][worst]).format()} ({worst})"


def bench_markdown(results: BenchResults) -> str:
    """The bench's Markdown report: one table per budget, then the definitions."""
    bench = results.config["bench"]
    lines = [f"# Bench: V {bench['metric']} before unlearning, after it, and after the attack", ""]
    lines.append(f"{results.facts} known facts; mean ± std over seeds. Attack: {bench['attack']}.")
    if results.controls:
        lines.append(
            "Control: the same attack on the never-unlearned model; 'drop vs control' is measured against it "
            "and ranks the methods. Brackets: 95% bootstrap intervals over facts. A difference is called "
            "only when the interval of the paired difference excludes 0."
        )
    for budget in bench["budgets"]:
        rows = [r for r in results.table if r["budget"] == budget]
        lines += ["", f"## Budget {budget_label(results.config['unlearn'].get('budget_metric'), budget)}", ""]
        uneven = len({r["seeds"] for r in rows}) > 1  # a merged bench whose parts ran different seeds
        cells = [
            {
                "method": r["method"],
                **({"seeds": str(r["seeds"])} if uneven else {}),
                "before": _pm(r, "before"),
                "unlearned": _pm(r, "unlearned"),
                "post-attack": _pm(r, "post_attack"),
                "drop": _pm(r, "drop"),
                **({"drop [CI]": _interval_cell(r, "drop")} if "intervals" in r else {}),
                **(
                    {"drop vs control [CI]": _interval_cell(r, "drop_vs_control")} if results.controls else {}
                ),
                **(
                    {
                        "Δ vs best baseline [CI]": _interval_cell(r, "vs_best"),
                        "ratio of mean drops [CI]": _interval_cell(r, "ratio_of_means", 2),
                    }
                    if "intervals" in r
                    else {"ratio vs best baseline": _ratio_cell(r) if r["method"] == "cir" else ""}
                ),
                **(
                    {"worst case (attack/probe)": _worst_cell(r)} if len(r.get("probe_drops", {})) > 1 else {}
                ),
                "general loss Δ%": _pm(r, "general_loss_change", 2),
                "held-out Δ": _pm(r, "heldout_change"),  # n/a without held-out facts
                "epochs": _pm(r, "epochs", 1),
                "s/fact": _pm(r, "seconds_per_fact", 3),
            }
            for r in rows
        ]
        lines.append(table(cells, list(cells[0]), markdown=True))
        best = rows[0]["best_baseline"] if rows else None
        lines.append(f"\nBest baseline at this budget (largest mean drop): {best}.")
        matrix = [r for r in rows if len(r.get("probe_drops", {})) > 1]
        if matrix:
            headline = matrix[0].get("headline", "drop").replace("_", " ")
            lines += [
                "",
                f"V {headline} under each attack and probe, post-attack [95% CI over facts]; a column "
                f"without an attack's name is {bench['attack']}'s",
                "",
            ]
            cells_by_probe = [
                {"method": r["method"]}
                | {p: Interval.from_json(i).format() for p, i in r["probe_drops"].items()}
                for r in matrix
            ]
            lines.append(table(cells_by_probe, list(cells_by_probe[0]), markdown=True))
        lines += ["", "Every V metric, mean over seeds: before / unlearned / post-attack", ""]
        others = [
            {"method": r["method"]}
            | {name: " / ".join(f"{r[f'{name}_{stage}']:.3f}" for stage in STAGES) for name in V_METRICS}
            for r in rows
        ]
        lines.append(table(others, list(others[0]), markdown=True))
    lines += ["", "## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in results.definition.items()]
    return "\n".join(lines) + "\n"


def run_markdown(report: RunReport) -> str:
    """A short Markdown report of `cir run`."""
    stages = {
        "all forget facts, before unlearning": report.forget_before,
        "all forget facts, after unlearning": report.forget_after,
        "V, after unlearning": report.v_after_unlearning,
        "V, post-attack": report.v_post_attack,
    }
    rows = [{"stage": stage, **scores.to_json()} for stage, scores in stages.items()]
    return (
        f"# {report.method} then {report.attack}\n\n{table(rows, list(rows[0]), markdown=True)}\n\n"
        f"Post-attack: {report.post_attack_definition}.\n\n"
        f"General-text loss {report.general_loss_before:.4f} -> {report.general_loss_after:.4f}; "
        f"{report.epochs} epoch(s) kept ({report.stop_reason}); "
        f"{report.seconds_per_fact:.3f} s per fact.\n"
    )


def tuned_note(results: BenchResults) -> str:
    """The `cir tune` studies (and trials) whose params a `cir bench --tuned` run used."""
    studies = results.config["tuned"]
    used = sorted({f"{t['study']} (trial {t['trial']})" for c in studies.values() for t in c.values()})
    return f"tuned params: {'; '.join(used) or 'none (no study matches the methods and budgets)'}"


def registry_table(registry: Registry, kind: str) -> str:
    """`cir methods` / `cir attacks`: each registered name (a `kind`) and its description."""
    rows = [{kind: name, "description": registry.get(name).description} for name in registry.names()]
    return table(rows, [kind, "description"])


def eval_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """`cir eval`'s table: a row per scored file (its name without the folder), a column per metric."""
    rows = [{"file": Path(name).name, **scores} for name, scores in results.items()]
    return table(rows, ["file", *sorted({c for r in rows for c in r} - {"file"})])


def demo_build_text(build: Mapping[str, Any]) -> str:
    """The demo model's build report: each fact set's prior scores, and the general-text loss."""
    rows = [
        {
            "facts": name,
            "acc_t0": build[f"{name}_acc_t0"],
            "acc_t1": build[f"{name}_acc_t1"],
            "answer_prob": build[f"{name}_answer_prob"],
        }
        for name in ("forget", "retain", "extra")
        if f"{name}_acc_t0" in build
    ]
    columns = ["facts", "acc_t0", "acc_t1", "answer_prob"]
    return f"{table(rows, columns)}\ngeneral-text loss: {build['general_loss']:.4f}"


def unlearn_text(result: UnlearnResult, out: Path) -> str:
    """`cir unlearn`'s result: forget facts and disruption before and after, why it stopped, its cost."""
    stages = {"before": result.history.before, "after": result.kept}
    rows = [
        {"": stage, **record.facts.to_json(), "general_loss": record.disruption.general_loss}
        | {"kl": record.disruption.kl}
        for stage, record in stages.items()
    ]
    return (
        f"{table(rows, list(rows[0]), digits=4)}\n"
        f"{result.stop_reason} after {result.epochs} epoch(s) kept; "
        f"{result.seconds:.1f} s ({result.seconds_per_fact:.3f} s per fact); output: {out}"
    )


def attack_text(result: AttackResult, out: Path) -> str:
    """`cir attack`'s result: V before the attack, after its last epoch and post-attack (its best)."""
    stages = {"before": result.before, "final": result.final, "post_attack": result.post_attack}
    rows = [{"": stage, **scores.to_json()} for stage, scores in stages.items()]
    return (
        f"{table(rows, list(rows[0]), digits=4)}\npost-attack: {result.post_attack_definition}; output: {out}"
    )


def definitions(runs: Sequence[BenchRun]) -> dict[str, str]:
    """What each reported number means."""
    return {
        "post_attack": runs[0].post_attack_definition if runs else "",
        "drop": "V metric before unlearning minus V metric post-attack (higher = more robustly forgotten)",
        "ratio": "CIR's drop / the best baseline's drop at the same budget, per seed, then mean and std; "
        "a seed where the baseline's drop is <= 0 has no ratio and is left out (the seeds counted are shown)",
        "drop_vs_control": "V post-attack on the never-unlearned model (the same attack, split and seed) "
        "minus V post-attack on the unlearned one, per fact: what unlearning removed beyond what the attack "
        "teaches",
        "intervals": "95% bootstrap intervals (scipy.stats.bootstrap, BCa) over facts, each fact's value "
        "first averaged over the seeds it was in V",
        "vs_best": "the headline drop (vs control when there is one) minus the best baseline's, paired by "
        "fact; a difference is called only when its interval excludes 0",
        "ratio_of_means": "mean headline drop / the best baseline's mean headline drop over the same facts",
        "worst_case": "the attack and probe metric (the bench's attack or an extra one; the headline "
        "metric or an extra probe's) under which the headline drop is smallest: the attacker's best pair "
        "(each probe at the attacker's chosen point, `bench.probes_at`)",
        "answer_prob": "exp(-mean cross-entropy of the answer tokens after the question), mean over V",
        "acc_t1": "mean renormalised probability of the right choice",
        "acc_t0": "argmax accuracy",
        "general_loss_change": "relative change of held-out general-text loss, in percent",
        "heldout_change": "selectivity: the headline metric on facts of other, never-trained domains, at the "
        "kept epoch minus before unlearning (0 = untouched; n/a = no held-out facts given)",
        "seconds_per_fact": "unlearning wall time (setup, steps, budget checks) up to the kept epoch / facts",
    }


def load_bench_results(path: Path) -> BenchResults:
    """Read a bench's results.json.

    Raises:
        DataError: naming the file if it is unreadable, not JSON or not in `BenchResults`' form.
    """
    text = read_text(path, "bench results file")
    try:
        return BenchResults.from_json(json.loads(text))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}: not a bench results file ({type(error).__name__}: {error})") from error


def retable(folder: Path) -> BenchResults:
    """Rebuild `folder`'s results table and results.md from the runs recorded in its results.json.

    Raises:
        DataError: as `load_bench_results`.
    """
    results = load_bench_results(folder / "results.json")
    bench = results.config["bench"]
    rows = aggregate(results.runs, bench["methods"], bench["budgets"], bench["metric"], results.controls)
    results.table = [row.to_json() for row in rows]
    results.definition = definitions(results.runs)
    write_json_atomic(folder / "results.json", results.to_json())
    (folder / "results.md").write_text(bench_markdown(results), encoding="utf-8")
    return results


def merge_bench_results(parts: Sequence[tuple[str, BenchResults]]) -> BenchResults:
    """One bench from several that ran the same bench on different methods (e.g. on several machines).

    Parts may run different numbers of seeds (e.g. the headline methods x 3, the rest x 1 where time
    is short): seed s is the same T/V split in every part, and each row keeps its own seed count.
    Parts may also run the same methods on other seeds (`bench.first_seed`, a seed per session):
    a method may be in several parts as long as no seed of it is run twice. The merged bench's
    `seeds` counts the distinct seeds, from the smallest (`first_seed`).

    Args:
        parts: (name for errors, e.g. the folder; its results), in the order their methods are listed.

    Raises:
        DataError: naming the part whose facts or bench, unlearn or attack settings (other than the
            methods and seeds) differ from the first's, or that repeats a method and seed of an
            earlier part.
    """

    def settings(results: BenchResults) -> dict[str, Any]:
        """What every part must share: bench (but methods, seeds, control, probes), unlearn and attack."""
        # the control is the same attack in every part that ran it: one part's serves all; the extra
        # probes and attacks leave the headline as it is, so parts may differ in them (cells stay empty)
        own = {"methods", "seeds", "first_seed", "control"}
        own |= {"probes", "probes_at", "extra_attacks", "extra_configs"}
        bench = {k: v for k, v in results.config["bench"].items() if k not in own}
        return {"bench": bench, "unlearn": results.config["unlearn"], "attack": results.config["attack"]}

    first_name, first = parts[0]
    expected = settings(first)
    methods: list[str] = []
    runs: list[BenchRun] = []
    controls: dict[tuple[int, int], ControlRun] = {}  # every part's control is the same attack: one each
    config = {**expected, "bench": dict(expected["bench"]), "methods": {}, "tuned": {}}
    for name, part in parts:
        for key, value in settings(part).items():
            if value != expected[key]:
                raise DataError(f"{name}: its {key} settings differ from {first_name}'s; only methods may")
        if part.facts != first.facts:
            raise DataError(f"{name}: {part.facts} facts, {first_name} has {first.facts}")
        earlier = {(run.method, run.seed) for run in runs}
        repeated = sorted({(run.method, run.seed) for run in part.runs} & earlier)
        if repeated:
            named = ", ".join(f"{method} seed {seed}" for method, seed in repeated)
            raise DataError(f"{name}: {named} already in an earlier part")
        methods += [m for m in part.config["bench"]["methods"] if m not in methods]
        runs += part.runs
        for control in part.controls:
            controls.setdefault((control.seed, control.fold), control)
        config["methods"] |= part.config.get("methods", {})
        config["tuned"] |= part.config.get("tuned", {})
    config["bench"]["methods"] = methods
    seeds = {run.seed for run in runs} | {control.seed for control in controls.values()}
    config["bench"]["seeds"], config["bench"]["first_seed"] = len(seeds), min(seeds)
    probes = [p for _, part in parts for p in part.config["bench"].get("probes", [])]
    config["bench"]["probes"] = list(dict.fromkeys(probes))  # every part's, in order
    config["bench"]["probes_at"] = {n: part.config["bench"].get("probes_at") for n, part in parts}
    extra = [a for _, part in parts for a in part.config["bench"].get("extra_attacks", [])]
    config["bench"]["extra_attacks"] = list(dict.fromkeys(extra))  # every part's (its records say which)
    bench = config["bench"]
    merged = list(controls.values())
    rows = aggregate(runs, methods, bench["budgets"], bench["metric"], merged)
    table = [row.to_json() for row in rows]
    return BenchResults(config, first.facts, definitions(runs), runs, table, merged)
