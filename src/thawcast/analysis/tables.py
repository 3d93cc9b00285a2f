"""Markdown tables, the one way thawcast writes them (``metrics/*.md`` and the report)."""

from __future__ import annotations

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
