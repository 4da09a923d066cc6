"""results.json -> the papers' table in markdown: mean ± std over seeds, gap to retrain in brackets."""

from __future__ import annotations

from typing import Any

from dualoptim.metrics.aggregate import METRICS

__all__ = ["markdown_table"]


def _cell(stats: dict[str, float] | None, gap: bool = True) -> str:
    if stats is None:
        return "–"
    text = f"{stats['mean']:.2f} ± {stats['std']:.2f}"
    return f"{text} ({stats['gap']:.2f})" if gap and "gap" in stats else text


def markdown_table(results: dict[str, Any]) -> str:
    """One row per (method, optimizer) plus Retrain and the original model, as in SPEC §5."""
    retrain = results["retrain"]
    header = ["Method", "Optimizer", *METRICS, "Gap", "Std", "Time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    original = results.get("original")
    if original:
        seconds = original.get("seconds")
        lines.append(
            "| Original | – | "
            + " | ".join(_cell(original["metrics"][m], gap=False) for m in METRICS)
            + f" | – | – | {'–' if seconds is None else f'{seconds:.1f}'} |"
        )
    lines.append(
        "| Retrain | – | "
        + " | ".join(_cell(retrain["metrics"][m], gap=False) for m in METRICS)
        + f" | 0.00 | {retrain['Std']:.2f} | {retrain['seconds']:.1f} |"
    )
    for row in results["rows"]:
        metrics = row.get("metrics")
        if metrics is None:
            cells = ["failed"] * len(METRICS) + ["–", "–", "–"]
        else:
            cells = [_cell(metrics[m]) for m in METRICS] + [
                f"{row['Gap']:.2f}",
                f"{row['Std']:.2f}",
                f"{row['seconds']:.1f}",
            ]
        lines.append(f"| {row['method']} | {row['optimizer']} | " + " | ".join(cells) + " |")
    notes = [
        "",
        f"Mean ± std over seeds {', '.join(str(s) for s in results['config']['seeds'])} (population std); "
        "(gap to the retrained reference's mean). Gap and Std average the four metrics' gaps and stds.",
    ]
    if results.get("time_ratio") is not None:
        notes.append(
            f"Unlearning takes on average {100 * results['time_ratio']:.1f}% of retraining's wall time "
            f"(retrain: {retrain['seconds']:.1f} s, evaluation excluded)."
        )
    for row in results["rows"]:
        for failure in row.get("failed", []):
            notes.append(
                f"- {row['method']}/{row['optimizer']} seed {failure['seed']} stopped: {failure['reason']}"
            )
    return "\n".join(lines + notes) + "\n"
