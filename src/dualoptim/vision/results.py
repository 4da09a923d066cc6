"""The image-classification results.json: per-run records -> one row per (method, strategy).

The top level is the envelope of every task (:func:`dualoptim.runs.envelope`); this task adds
``dataset``, ``std`` (the convention of every ± in it), ``original``, ``retrain`` and
``time_ratio``. Each row holds ``method``, ``strategy``, ``metrics.{FA,RA,TA,MIA}.{mean,std,gap}``,
``Gap``, ``Std``, ``seconds``, the per-seed values, the curves and the gradient norms.

``do_nothing`` is the control (``docs/design.md`` §4.3): the original model, before unlearning,
measured on each seed's split like a run and scored with the same Gap and Std against the same
retrain means; every row's ``unlearning_check`` says whether its forget-side metrics (FA, MIA)
stayed within seed noise of it (``did_not_unlearn``). :func:`with_controls` adds both to results
written before they existed, from their ``original`` block (the same numbers: Gap and Std only
need the means and stds over seeds).
"""

from __future__ import annotations

import copy
from typing import Any

from dualoptim.config import to_dict
from dualoptim.metrics.aggregate import (
    METRICS,
    STD_NAMES,
    gap,
    mean_std,
    std_score,
    summarize,
    unlearning_check,
)
from dualoptim.runs import envelope
from dualoptim.vision.config import TASK, VisionConfig

__all__ = ["DO_NOTHING", "FORGET_SIDE", "NOISE_FLOOR", "build_results", "strategy_of", "with_controls"]

#: the papers' convention for image classification: population std over seeds
DDOF = 0
#: the label of the control row: the original model, before unlearning
DO_NOTHING = "do nothing"
#: the metrics that show forgetting: accuracy on the forget set and the MIA on it
FORGET_SIDE = ("FA", "MIA")
#: the smallest move of a forget-side metric (percentage points) that counts as one when seeds give no spread
NOISE_FLOOR = 1.0


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


def do_nothing_row(original: dict[str, Any], reference: dict[str, float]) -> dict[str, Any]:
    """The control row: the original model's metrics over seeds, with each metric's gap, Gap and Std.

    ``original`` is results.json's ``original`` block (mean and std per metric over seeds, and the
    per-seed values when written since the control existed); the numbers are those of
    :func:`dualoptim.metrics.aggregate.summarize` over the same seeds.
    """
    metrics = {
        m: {**original["metrics"][m], "gap": abs(original["metrics"][m]["mean"] - reference[m])} for m in METRICS
    }
    return {
        "method": DO_NOTHING,
        "strategy": "-",
        "metrics": metrics,
        "Gap": gap({m: metrics[m]["mean"] for m in METRICS}, reference),
        "Std": std_score({m: metrics[m]["std"] for m in METRICS}),
        "per_seed": original.get("per_seed"),
        "seconds": 0.0,
    }


def with_controls(results: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``results`` with the do-nothing row and every row's did-not-unlearn check.

    A file without an ``original`` block keeps ``do_nothing`` None and its rows unchecked
    (``did_not_unlearn`` None); the input is not modified.
    """
    results = copy.deepcopy(results)
    original = results.get("original")
    if not original or not all(m in original.get("metrics", {}) for m in METRICS):
        results["do_nothing"] = None
        for row in results["rows"]:
            row.setdefault("did_not_unlearn", None)
        return results
    reference = {m: results["retrain"]["metrics"][m]["mean"] for m in METRICS}
    control = do_nothing_row(original, reference)
    results["do_nothing"] = control
    for row in results["rows"]:
        check = unlearning_check(row.get("metrics") or {}, control["metrics"], FORGET_SIDE, NOISE_FLOOR)
        row["unlearning_check"] = check
        row["did_not_unlearn"] = check["did_not_unlearn"]
    return results


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
    results = envelope(
        TASK,
        to_dict(config),
        env,
        rows,
        seconds,
        dataset=config.data.dataset,
        std=STD_NAMES[DDOF],
        original={
            "metrics": {m: summary([references[s]["original"][m] for s in seeds]) for m in METRICS},
            "per_seed": [{"seed": s, **{m: references[s]["original"][m] for m in METRICS}} for s in seeds],
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
    return with_controls(results)
