"""Markdown tables and metric values, the one way thawcast writes them (``metrics/*`` and the report)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def markdown_table(head: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """Lines of a GitHub-style table: ``| a | b |``, ``|---|---|``, then one line per row.

    Cells are written with ``str``; a row must have as many cells as ``head``.
    """
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    for row in rows:
        row = list(row)
        if len(row) != len(head):
            raise ValueError(f"row {row} has {len(row)} cells for {len(head)} columns")
        lines.append("| " + " | ".join(map(str, row)) + " |")
    return lines


def rounded(obj, digits: int = 4):
    """``obj`` with every float (in nested dicts and lists) rounded to ``digits`` decimals, NaN as None.

    A tracked metric file must not change when a float's last bits do (another core count, another BLAS).
    """
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, digits)
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


def studies_markdown(table: dict, title: str = "Tuning studies",
             objective: str = ("Objective: validation RMSE (degC), lower is better; 'defaults' = the params.yaml"
                               " settings (each study's first trial).")) -> str:
    """The studies of ``table`` (per architecture: its summary) as a markdown table, best first."""
    def num(v, fmt):
        return "" if v is None else format(v, fmt)

    lines = [f"# {title}", "", objective, ""]
    rows = []
    for arch, r in sorted(table.items(), key=lambda kv: kv[1]["best_value"]):
        gain = (1 - r["best_value"] / r["default_value"]) if r["default_value"] else None
        params = ", ".join(f"{k}={num(v, '.3g') if isinstance(v, float) else v}" for k, v in r["best_params"].items())
        rows.append([arch, num(r["best_value"], ".4f"), num(r["default_value"], ".4f"), num(gain, "+.1%"),
                     r["trials_complete"], r["trials_pruned"], r["trials_failed"], params])
    lines += markdown_table(["architecture", "best", "defaults", "gain", "complete", "pruned", "failed",
                             "best params"], rows)
    return "\n".join(lines) + "\n"
