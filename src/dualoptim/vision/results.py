"""The image-classification results.json: per-run records -> one row per (method, strategy).

The top level is the envelope of every task (:func:`dualoptim.runs.envelope`); this task adds
``dataset``, ``std`` (the convention of every ± in it), ``original``, ``retrain`` and
``time_ratio``. Each row holds ``method``, ``strategy``, ``metrics.{FA,RA,TA,MIA}.{mean,std,gap}``,
``Gap``, ``Std``, ``seconds``, the per-seed values, the curves and the gradient norms.
"""

from __future__ import annotations

from typing import Any

from dualoptim.config import to_dict
from dualoptim.metrics.aggregate import METRICS, STD_NAMES, mean_std, summarize
from dualoptim.runs import envelope
from dualoptim.vision.config import TASK, VisionConfig

__all__ = ["build_results", "strategy_of"]

#: the papers' convention for image classification: population std over seeds
DDOF = 0


def strategy_of(row: dict[str, Any]) -> str:
    """A row's strategy; files written before the shared vocabulary call it ``optimizer``."""
    return row["strategy"] if "strategy" in row else row["optimizer"]


def _series(values: list[list[float]]) -> dict[str, list[float]]:
    """Mean and std, point by point, of equally long per-seed series."""
    length = min(len(v) for v in values)
    stats = [mean_std([v[i] for v in values], DDOF) for i in range(length)]
    return {"mean": [m for m, _ in stats], "std": [s for _, s in stats]}


def _row(method: str, strategy: str, mine: list[dict], reference: dict, retrain_seconds: float) -> dict:
    ok = [r for r in mine if r["status"] == "ok"]
    row: dict[str, Any] = {
        "method": method,
        "strategy": strategy,
        "seeds": [r["seed"] for r in ok],
        "failed": [{"seed": r["seed"], "reason": r["reason"]} for r in mine if r["status"] != "ok"],
        "per_seed": [{"seed": r["seed"], **r["metrics"], "seconds": r["seconds"]} for r in ok],
    }
    if not ok:
        return {**row, "metrics": None, "Gap": None, "Std": None, "seconds": None}
    row.update(summarize([r["metrics"] for r in ok], reference, DDOF))
    row["seconds"], row["seconds_std"] = mean_std([r["seconds"] for r in ok], DDOF)
    row["time_ratio"] = row["seconds"] / retrain_seconds
    row["steps"] = ok[0]["steps"]
    row["curves"] = {
        "progress": [p["progress"] for p in ok[0]["curve"]],
        **{m: _series([[p[m] for p in r["curve"]] for r in ok]) for m in METRICS},
    }
    row["grad_norms"] = {}
    for side in ("forget", "retain"):
        series = [r["grad_norms"][side] for r in ok]
        if series and series[0]:
            row["grad_norms"][side] = {
                "progress": [p for p, _ in series[0]],
                **_series([[n for _, n in s] for s in series]),
            }
    return row


def build_results(
    config: VisionConfig,
    references: dict[int, dict],
    runs: list[dict],
    env: dict[str, Any],
    original_meta: dict[str, Any],
    *,
    seconds: float,
) -> dict[str, Any]:
    """results.json from the reference records (per seed) and the unlearning records."""
    seeds = list(config.seeds)

    def summary(values: list[float]) -> dict[str, float]:
        return dict(zip(("mean", "std"), mean_std(values, DDOF)))

    retrain_metrics = {m: summary([references[s]["metrics"][m] for s in seeds]) for m in METRICS}
    reference = {m: retrain_metrics[m]["mean"] for m in METRICS}
    retrain_seconds, retrain_seconds_std = mean_std([references[s]["seconds"] for s in seeds], DDOF)
    rows = [
        _row(method, strategy, [r for r in runs if (r["method"], r["strategy"]) == (method, strategy)],
             reference, retrain_seconds)
        for method in config.methods
        for strategy in config.strategies
    ]  # fmt: skip
    timed = [r["seconds"] for r in rows if r.get("seconds") is not None]
    return envelope(
        TASK,
        to_dict(config),
        env,
        rows,
        seconds,
        dataset=config.data.dataset,
        std=STD_NAMES[DDOF],
        original={
            "metrics": {m: summary([references[s]["original"][m] for s in seeds]) for m in METRICS},
            "seconds": original_meta.get("seconds"),
        },
        retrain={
            "metrics": retrain_metrics,
            "Std": sum(retrain_metrics[m]["std"] for m in METRICS) / len(METRICS),
            "seconds": retrain_seconds,
            "seconds_std": retrain_seconds_std,
            "per_seed": [
                {"seed": s, **references[s]["metrics"], "seconds": references[s]["seconds"]} for s in seeds
            ],
            "curve_reference": {
                m: mean_std([references[s]["curve_metrics"][m] for s in seeds], DDOF)[0] for m in METRICS
            },
            "forget_size": references[seeds[0]]["forget_size"],
            "retain_size": references[seeds[0]]["retain_size"],
        },
        time_ratio=(sum(timed) / len(timed)) / retrain_seconds if timed else None,
    )
