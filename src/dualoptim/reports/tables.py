"""Markdown tables: one cell format for mean ± std everywhere."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table", "mean_std_cell"]


def mean_std_cell(mean: float | None, std: float | None, *, scale: float = 1.0, digits: int = 2) -> str:
    """``"12.34 ± 0.56"``; a mean without a std (a single seed or task) prints alone; None is ``"–"``."""
    if mean is None:
        return "–"
    text = f"{scale * mean:.{digits}f}"
    return text if std is None else f"{text} ± {scale * std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
