"""Readable tables of results: plain text for the terminal, Markdown for files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


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
