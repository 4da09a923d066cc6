"""Mean ± std over seeds (or tasks) and the papers' Gap and Std scores (``docs/design.md`` §4.1, §4.3).

The one place every task aggregates. The standard deviation convention is an argument because
the papers differ: the image-classification tables use the population std (``ddof=0``), the LLM
papers' scripts the sample std (``ddof=1``); every table names the one it prints.

For metrics :math:`M \\in \\{FA, RA, TA, MIA\\}` measured over seeds :math:`s` and retrain reference
means :math:`M^*`:

.. math::
    \\mathrm{Gap} = \\tfrac14 \\sum_M |\\mathrm{mean}_s M_s - M^*|, \\qquad
    \\mathrm{Std} = \\tfrac14 \\sum_M \\mathrm{std}_s M_s \\ (\\text{population, ddof} = 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = [
    "METRICS",
    "STD_NAMES",
    "gap",
    "mean_std",
    "metrics_over_runs",
    "std_score",
    "summarize",
    "unlearning_check",
]

METRICS = ("FA", "RA", "TA", "MIA")


def mean_std(values: Sequence[float], ddof: int = 0) -> tuple[float, float | None]:
    """Mean and standard deviation with ``ddof`` delta degrees of freedom (0: population, 1: sample).

    The std is None when it is undefined (fewer than ``ddof + 1`` values): a single task has no spread.
    """
    if not values:
        raise ValueError("mean and std of no values are undefined")
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population std) or 1 (sample std), got {ddof!r}")
    mean = math.fsum(values) / len(values)
    if len(values) <= ddof:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - ddof))


STD_NAMES = {0: "population std (ddof 0)", 1: "sample std (ddof 1)"}


def metrics_over_runs(records: Sequence[Mapping], ddof: int) -> tuple[dict[str, dict | None], dict[str, str]]:
    """``{name: {"mean", "std"}}`` over the finished records (those with ``metrics``), and the reason
    of every metric left ``None``: a metric absent from any run is absent from the row, with the
    first reason a run gives (``record["absent"][name]``), never averaged over the runs that have it.
    """
    finished = [r for r in records if "metrics" in r]
    names = list(dict.fromkeys(name for r in finished for name in r["metrics"]))
    metrics: dict[str, dict | None] = {}
    absent: dict[str, str] = {}
    for name in names:
        values = [r["metrics"].get(name) for r in finished]
        if not values or any(v is None for v in values):
            metrics[name] = None
            absent[name] = next((r["absent"][name] for r in finished if name in r.get("absent", {})), "absent")
        else:
            metrics[name] = dict(zip(("mean", "std"), mean_std(values, ddof)))
    return metrics, absent


def gap(means: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """Mean absolute difference between the metric means and the retrain reference means."""
    return math.fsum(abs(means[m] - reference[m]) for m in METRICS) / len(METRICS)


def std_score(stds: Mapping[str, float]) -> float:
    """Mean of the four metrics' standard deviations over seeds."""
    return math.fsum(stds[m] for m in METRICS) / len(METRICS)


def summarize(per_seed: Sequence[Mapping[str, float]], reference: Mapping[str, float], ddof: int = 0) -> dict:
    """``{"metrics": {M: {mean, std, gap}}, "Gap": ..., "Std": ...}`` from per-seed metric dicts.

    ``ddof=0`` (the population std) is the image-classification papers' convention.
    """
    metrics = {}
    for name in METRICS:
        mean, std = mean_std([run[name] for run in per_seed], ddof)
        metrics[name] = {"mean": mean, "std": std, "gap": abs(mean - reference[name])}
    means = {name: metrics[name]["mean"] for name in METRICS}
    stds = {name: metrics[name]["std"] for name in METRICS}
    return {"metrics": metrics, "Gap": gap(means, reference), "Std": std_score(stds)}


def unlearning_check(
    run: Mapping[str, Mapping[str, float | None] | None],
    control: Mapping[str, Mapping[str, float | None] | None],
    names: Sequence[str],
    floor: float,
) -> dict:
    r"""Did a run leave its forget-side metrics within seed noise of the do-nothing control?

    For each forget-side metric :math:`M` in ``names`` that both rows have (``{"mean", "std"}``):

    .. math::
        d_M = |\bar M_{\mathrm{run}} - \bar M_{\mathrm{control}}|, \qquad
        n_M = \max(\mathrm{std}_{\mathrm{run}}, \mathrm{std}_{\mathrm{control}}, \mathrm{floor})

    (a std that is undefined, one seed or one run, counts as 0, so ``floor`` is then the noise: the
    smallest move, in the metrics' unit, that counts as one). The run *did not unlearn* when
    :math:`d_M \le n_M` for every compared metric: no forget-side metric moved further from the
    model before unlearning than the runs spread. Returns ``{"did_not_unlearn": bool | None,
    "metrics": {M: {"difference", "noise"}}, "floor"}``; ``did_not_unlearn`` is None when no metric
    can be compared (a failed run, or a control without them).
    """
    if not floor >= 0:
        raise ValueError(f"the noise floor must be >= 0, got {floor}")
    compared: dict[str, dict[str, float]] = {}
    for name in names:
        mine, theirs = run.get(name), control.get(name)
        if not mine or not theirs or mine.get("mean") is None or theirs.get("mean") is None:
            continue
        noise = max(mine.get("std") or 0.0, theirs.get("std") or 0.0, floor)
        compared[name] = {"difference": abs(mine["mean"] - theirs["mean"]), "noise": noise}
    flag = all(c["difference"] <= c["noise"] for c in compared.values()) if compared else None
    return {"did_not_unlearn": flag, "metrics": compared, "floor": floor}
