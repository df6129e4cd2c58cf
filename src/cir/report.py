"""Readable tables of results: plain text for the terminal, Markdown for files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

V_METRICS = ("answer_prob", "acc_t1", "acc_t0")  # the bench reports each at every stage
STAGES = ("before", "unlearned", "post_attack")


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else str(value)


def table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: int = 3, markdown: bool = False
) -> str:
    """Format `rows` (dicts) as an aligned text table, or a Markdown table with `markdown`."""
    cells = [[_cell(row.get(c), digits) for c in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
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


def bench_markdown(results: Mapping[str, Any]) -> str:
    """The bench's Markdown report: one table per budget, then the definitions."""
    metric = results["config"]["bench"]["metric"]
    lines = [f"# Bench: V {metric} before unlearning, after it, and after the attack", ""]
    lines.append(
        f"{results['facts']} known facts; mean ± std over seeds. Attack: "
        f"{results['config']['bench']['attack']}."
    )
    for budget in results["config"]["bench"]["budgets"]:
        rows = [r for r in results["table"] if r["budget"] == budget]
        lines += ["", f"## Budget {100 * budget:g}% general-loss rise", ""]
        cells = [
            {
                "method": r["method"],
                "before": _pm(r, "before"),
                "unlearned": _pm(r, "unlearned"),
                "post-attack": _pm(r, "post_attack"),
                "drop": _pm(r, "drop"),
                "ratio vs best baseline": _pm(r, "ratio", 2) if r["method"] == "cir" else "",
                "general loss Δ%": _pm(r, "general_loss_change", 2),
                "epochs": _pm(r, "epochs", 1),
                "s/fact": _pm(r, "seconds_per_fact", 3),
            }
            for r in rows
        ]
        lines.append(table(cells, list(cells[0]), markdown=True))
        best = rows[0]["best_baseline"] if rows else None
        lines.append(f"\nBest baseline at this budget (largest mean drop): {best}.")
        lines += ["", "Every V metric, mean over seeds: before / unlearned / post-attack", ""]
        others = [
            {"method": r["method"]}
            | {name: " / ".join(f"{r[f'{name}_{stage}']:.3f}" for stage in STAGES) for name in V_METRICS}
            for r in rows
        ]
        lines.append(table(others, list(others[0]), markdown=True))
    lines += ["", "## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in results["definition"].items()]
    return "\n".join(lines) + "\n"
