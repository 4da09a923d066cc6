"""Image-classification results.json -> table.md (the papers' table) and the PNG figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualoptim.io import write_text_atomic
from dualoptim.metrics.aggregate import METRICS
from dualoptim.reports.tables import markdown_table as _lines
from dualoptim.reports.tables import mean_std_cell
from dualoptim.runs import slug
from dualoptim.vision.results import FORGET_SIDE, NOISE_FLOOR, strategy_of, with_controls

__all__ = ["markdown_table", "write_report"]


def _cell(stats: dict[str, float] | None, gap: bool = True) -> str:
    if stats is None:
        return "–"
    text = mean_std_cell(stats["mean"], stats["std"])
    return f"{text} ({stats['gap']:.2f})" if gap and "gap" in stats else text


def markdown_table(results: dict[str, Any]) -> str:
    """One row per (method, strategy) after Retrain and the do-nothing control: mean ± std (gap to retrain).

    The do-nothing row is the original model scored like a run (its Gap is what unlearning must
    beat); a run whose forget-side metrics stay within seed noise of it is marked "did not unlearn".
    """
    results = with_controls(results)
    retrain = results["retrain"]
    control = results["do_nothing"]
    rows = [["Retrain", "–", *(_cell(retrain["metrics"][m], gap=False) for m in METRICS),
             "0.00", f"{retrain['Std']:.2f}", f"{retrain['seconds']:.1f}"]]  # fmt: skip
    if control is not None:
        rows.append(["do nothing (original)", "–", *(_cell(control["metrics"][m]) for m in METRICS),
                     f"{control['Gap']:.2f}", f"{control['Std']:.2f}", "0.0"])  # fmt: skip
    for row in results["rows"]:
        metrics = row.get("metrics")
        if metrics is None:
            cells = ["failed"] * len(METRICS) + ["–", "–", "–"]
        else:
            cells = [_cell(metrics[m]) for m in METRICS] + [f"{row['Gap']:.2f}", f"{row['Std']:.2f}", f"{row['seconds']:.1f}"]
        flag = " (did not unlearn)" if row.get("did_not_unlearn") else ""
        rows.append([row["method"], strategy_of(row) + flag, *cells])
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
    notes += _control_notes(results)
    for row in results["rows"]:
        for failure in row.get("failed", []):
            notes.append(f"- {row['method']}/{strategy_of(row)} seed {failure['seed']} stopped: {failure['reason']}")
    return "\n".join(lines + notes) + "\n"


def _control_notes(results: dict[str, Any]) -> list[str]:
    """What the do-nothing row says: the flag's rule, and whether any run beats doing nothing."""
    control = results["do_nothing"]
    if control is None:
        return ["The do-nothing row is absent: this results.json has no original model's metrics."]
    notes = [
        f"do nothing = the original model before unlearning, measured on each seed's split and scored like a run. "
        f"\"did not unlearn\": every forget-side metric ({', '.join(FORGET_SIDE)}) within seed noise of it, "
        f"|mean difference| <= max(std of the run, std of do nothing, {NOISE_FLOOR:g} point) (docs/design.md §4.3)."
    ]
    scored = [r for r in results["rows"] if r.get("Gap") is not None]
    if scored and all(r["Gap"] >= control["Gap"] for r in scored):
        notes.append(f"No run beats doing nothing: the do-nothing Gap {control['Gap']:.2f} is at most every run's "
                     f"(best {min(r['Gap'] for r in scored):.2f}).")  # fmt: skip
    flagged = [f"{r['method']}/{strategy_of(r)}" for r in results["rows"] if r.get("did_not_unlearn")]
    if flagged:
        notes.append(f"Did not unlearn: {', '.join(flagged)}.")
    return notes


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
