"""Image-classification results.json -> table.md (the papers' table) and the PNG figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualoptim.io import write_text_atomic
from dualoptim.metrics.aggregate import METRICS
from dualoptim.reports.tables import markdown_table as _lines
from dualoptim.reports.tables import mean_std_cell
from dualoptim.runs import slug
from dualoptim.vision.results import strategy_of

__all__ = ["markdown_table", "write_report"]


def _cell(stats: dict[str, float] | None, gap: bool = True) -> str:
    if stats is None:
        return "–"
    text = mean_std_cell(stats["mean"], stats["std"])
    return f"{text} ({stats['gap']:.2f})" if gap and "gap" in stats else text


def markdown_table(results: dict[str, Any]) -> str:
    """One row per (method, strategy) after the original model and Retrain: mean ± std (gap to retrain)."""
    retrain = results["retrain"]
    rows = []
    original = results.get("original")
    if original:
        seconds = original.get("seconds")
        rows.append(["Original", "–", *(_cell(original["metrics"][m], gap=False) for m in METRICS),
                     "–", "–", "–" if seconds is None else f"{seconds:.1f}"])  # fmt: skip
    rows.append(["Retrain", "–", *(_cell(retrain["metrics"][m], gap=False) for m in METRICS),
                 "0.00", f"{retrain['Std']:.2f}", f"{retrain['seconds']:.1f}"])  # fmt: skip
    for row in results["rows"]:
        metrics = row.get("metrics")
        if metrics is None:
            cells = ["failed"] * len(METRICS) + ["–", "–", "–"]
        else:
            cells = [_cell(metrics[m]) for m in METRICS] + [f"{row['Gap']:.2f}", f"{row['Std']:.2f}", f"{row['seconds']:.1f}"]
        rows.append([row["method"], strategy_of(row), *cells])
    lines = _lines(["Method", "Strategy", *METRICS, "Gap", "Std", "Time (s)"], rows)
    std = results.get("std", "population std (ddof 0)")
    notes = [
        "",
        f"Mean ± std over seeds {', '.join(str(s) for s in results['config']['seeds'])} ({std}); "
        "(gap to the retrained reference's mean). Gap and Std average the four metrics' gaps and stds.",
    ]
    if results.get("time_ratio") is not None:
        notes.append(
            f"Unlearning takes on average {100 * results['time_ratio']:.1f}% of retraining's wall time "
            f"(retrain: {retrain['seconds']:.1f} s, evaluation excluded)."
        )
    for row in results["rows"]:
        for failure in row.get("failed", []):
            notes.append(f"- {row['method']}/{strategy_of(row)} seed {failure['seed']} stopped: {failure['reason']}")
    return "\n".join(lines + notes) + "\n"


def write_report(results: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``table.md``, ``stability.png`` (all methods), ``stability-<method>.png`` and ``grad-norms.png``."""
    from dualoptim.vision.plots import plot_grad_norms, plot_stability

    out = Path(out)
    written = [write_text_atomic(out / "table.md", markdown_table(results))]
    methods = list(dict.fromkeys(row["method"] for row in results["rows"] if row.get("curves")))
    if methods:
        written.append(plot_stability(results, out / "stability.png"))
        for method in methods:
            written.append(plot_stability(results, out / f"stability-{slug(method)}.png", methods=[method]))
        written.append(plot_grad_norms(results, out / "grad-norms.png"))
    return written
