"""results.json -> markdown tables and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualoptim.io import write_text_atomic

__all__ = ["write_report"]


def write_report(results: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``table.md``, ``stability.png`` (all methods), ``stability-<method>.png`` and ``grad-norms.png``."""
    from dualoptim.reports.plots import plot_grad_norms, plot_stability
    from dualoptim.reports.tables import markdown_table

    out = Path(out)
    written = [write_text_atomic(out / "table.md", markdown_table(results))]
    methods = list(dict.fromkeys(row["method"] for row in results["rows"] if row.get("curves")))
    if methods:
        written.append(plot_stability(results, out / "stability.png"))
        for method in methods:
            safe = method.replace("+", "plus")
            written.append(plot_stability(results, out / f"stability-{safe}.png", methods=[method]))
        written.append(plot_grad_norms(results, out / "grad-norms.png"))
    return written
