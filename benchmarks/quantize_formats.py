"""Each quantization format as its own attack: V before, unlearned, after each round trip, per method.

A `quantize` bench scores V after every format of `attack.formats` (its attack epochs 1..F, in
that order) and keeps the attacker's best as the post-attack point. This reads the per-fact records
of its results.json and tables each format separately: V's mean after the round trip, and the drop
against the same round trip of the never-unlearned model (the bench's control), with its 95%
bootstrap interval over facts (`cir.stats`, `cir.intervals`). Nothing is rerun.

    python benchmarks/quantize_formats.py RESULTS_DIR [--metric acc_t1] [--out formats.md]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from cir.intervals import mean_interval
from cir.report import load_bench_results, table
from cir.stats import by_fact, control_values, fact_drops, v_values


def format_rows(folder: Path, metric: str) -> list[dict[str, str]]:
    """One row per method (and one for the control), one column pair per format."""
    results = load_bench_results(folder / "results.json")
    formats = results.config["attack"]["formats"]
    rows = []
    for method in results.config["bench"]["methods"]:
        runs = [r for r in results.runs if r.method == method]
        if not runs:
            continue
        row = {"method": method}
        for stage in ("before", "unlearned"):
            row[stage] = f"{statistics.fmean(v_values(runs, stage, metric).values()):.3f}"
        for epoch, name in enumerate(formats, start=1):
            stage = f"attack epoch {epoch}"
            post = v_values(runs, stage, metric)
            drops = fact_drops(runs, metric, results.controls, stage)
            headline = drops.get("drop_vs_control") or drops["drop"]
            interval = mean_interval(list(by_fact(headline).values()))
            row[name] = f"{statistics.fmean(post.values()):.3f}, drop {interval.format()}"
        rows.append(row)
    if results.controls:
        control = {"method": "control (never unlearned)"}
        for epoch, name in enumerate(formats, start=1):
            values = control_values(results.controls, metric, f"attack epoch {epoch}").values()
            control[name] = f"{statistics.fmean(values):.3f}"
        rows.append(control)
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a quantize bench's output folder")
    parser.add_argument("--metric", default="acc_t1")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    rows = format_rows(args.results, args.metric)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = table(rows, columns, markdown=True)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
