"""Run records -> the results envelope of the diffusion task (``results.json``).

One row per (method, strategy), plus the row ``Original`` (the model before unlearning). Each row
holds its per-class metrics (mean over seeds) and, over forgotten classes, mean ± std of FA, FD
(or FID) and the kept-class accuracy of generated images.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from dualoptim.config import to_dict
from dualoptim.diffusion.config import TASK, DiffusionConfig
from dualoptim.metrics.aggregate import mean_std
from dualoptim.runs import envelope

__all__ = ["METRICS", "build_results"]

#: the metrics of every row, as stored in run records
METRICS = ("FA", "FD", "kept_accuracy")


def _summary(values: list[float]) -> dict[str, float | None]:
    mean, std = mean_std(values, ddof=1)  # sample std over forgotten classes
    return {"mean": mean, "std": std}


def _row(method: str, strategy: str | None, per_class: dict[str, dict[str, float]], **extra: Any) -> dict[str, Any]:
    row = {"method": method, "strategy": strategy, "per_class": per_class, **extra}
    for metric in METRICS:
        values = [m[metric] for m in per_class.values() if metric in m]
        row[metric] = _summary(values) if values else None
    return row


def build_results(config: DiffusionConfig, environment: dict[str, Any], original: dict[str, Any],
                  records: list[dict[str, Any]], seconds: float, *, classes: tuple[str, ...], distance: str) -> dict[str, Any]:  # fmt: skip
    """The envelope: rows, the original model's sample accuracy per class, failures, and the distance's name."""
    before = {classes[int(c)]: m for c, m in original["before"].items()}
    rows = [_row("Original", None, before)]
    grouped: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    failures = []
    for record in records:
        if "failed" in record:
            failures.append({k: record[k] for k in ("class_name", "method", "strategy", "seed", "failed")})
            continue
        entry = {**record["metrics"], "seconds": record["seconds"]}
        grouped[(record["method"], record["strategy"])][record["class_name"]].append(entry)
    for (method, strategy), by_class in grouped.items():
        per_class = {name: {k: sum(e[k] for e in entries) / len(entries) for k in entries[0]}
                     for name, entries in by_class.items()}  # fmt: skip
        times = [m["seconds"] for m in per_class.values()]
        rows.append(_row(method, strategy, per_class, seconds=sum(times) / len(times)))
    return envelope(
        TASK, to_dict(config), environment, rows, seconds,
        distance=distance, classes=list(classes),
        original={"sample_accuracy": original["sample_accuracy"], "pretrain_seconds": original["pretrain_seconds"],
                  "classifier_seconds": original["classifier_seconds"]},
        failures=failures,
        # unlearning plus sampling of every run, as stored: unlike `seconds` it survives a resume
        run_seconds=sum(r.get("seconds", 0.0) + r.get("eval_seconds", 0.0) for r in records),
    )  # fmt: skip
