"""Run records -> the results envelope of the diffusion task (``results.json``).

One row per (method, strategy), after the do-nothing row ``Original`` (the model before
unlearning, scored on each seed's noise bank exactly like the runs). Every row holds, per
forgotten class, each metric's value per seed and its mean ± sample std over seeds: the spread that
matters is run to run on one class, not class to class (``docs/design.md`` §4.5). A run row whose
FA stays within seed noise of the do-nothing row's, on a class, is flagged ``did_not_unlearn``
there (:func:`did_not_unlearn`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from dualoptim.config import to_dict
from dualoptim.diffusion.config import TASK, DiffusionConfig
from dualoptim.metrics.aggregate import mean_std
from dualoptim.runs import envelope

__all__ = ["METRICS", "NOISE_MULTIPLE", "RECOGNISED", "build_results", "did_not_unlearn", "fa_noise", "seed_summary"]

#: the metrics of every row, as stored in run records
METRICS = ("FA", "FD", "kept_accuracy")
#: a run "did not unlearn" a class while its mean FA is above the control's minus this many seed-noise units
NOISE_MULTIPLE = 2.0
#: a class counts as recognised when the classifier labels at least this % of the original's samples as it
RECOGNISED = 50.0


def seed_summary(per_seed: dict[int, float]) -> dict[str, Any]:
    """``{"mean", "std", "per_seed"}``: mean and sample std (ddof 1; None for one seed) over seeds."""
    mean, std = mean_std(list(per_seed.values()), ddof=1)
    return {"mean": mean, "std": std, "per_seed": {str(s): v for s, v in sorted(per_seed.items())}}


def fa_noise(original_fa: dict[int, float], forget_samples: int) -> float:
    r"""The seed noise of FA on one class, in FA points:

    .. math:: \sigma = \max\Big(\mathrm{std}_s\,FA^{orig}_s,\ 100\sqrt{\bar p (1 - \bar p) / n}\Big),\qquad \bar p = \overline{FA^{orig}} / 100

    the larger of the do-nothing control's measured spread over seeds and the binomial spread one
    seed's FA has from drawing ``n = forget_samples`` images alone (a floor: with three seeds the
    measured spread can be near 0 by chance).
    """
    values = list(original_fa.values())
    p = sum(values) / len(values) / 100.0
    binomial = 100.0 * math.sqrt(p * (1 - p) / forget_samples)
    measured = mean_std(values, ddof=1)[1] if len(values) > 1 else 0.0
    return max(measured or 0.0, binomial)


def did_not_unlearn(run_fa: dict[int, float], original_fa: dict[int, float], noise: float) -> bool:
    r"""Whether a run left a class as recognisable as doing nothing did:

    .. math:: \overline{FA^{run}} \ge \overline{FA^{orig}} - k\,\sigma,\qquad k = 2

    over the seeds the run has (the control is paired with them: same seeds, same noise banks),
    :math:`\sigma` from :func:`fa_noise`. A class the original never draws (FA near 0) can
    therefore never count as unlearned.
    """
    seeds = [s for s in run_fa if s in original_fa]
    if not seeds:
        raise ValueError(f"no seed of the run ({sorted(run_fa)}) has a do-nothing control ({sorted(original_fa)})")
    run_mean = sum(run_fa[s] for s in seeds) / len(seeds)
    control_mean = sum(original_fa[s] for s in seeds) / len(seeds)
    return run_mean >= control_mean - NOISE_MULTIPLE * noise


def _per_class(by_class: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """class -> seed -> metrics  =>  class -> metric -> seed summary (plus the seeds present)."""
    out = {}
    for name, by_seed in by_class.items():
        entry: dict[str, Any] = {"seeds": sorted(by_seed)}
        for metric in next(iter(by_seed.values())):
            entry[metric] = seed_summary({s: m[metric] for s, m in by_seed.items()})
        out[name] = entry
    return out


def build_results(config: DiffusionConfig, environment: dict[str, Any], originals: list[dict[str, Any]],
                  records: list[dict[str, Any]], seconds: float, *, classes: tuple[str, ...], distance: str) -> dict[str, Any]:  # fmt: skip
    """The envelope: the do-nothing row and one row per (method, strategy), per class and seed; the original
    model's per-class sample accuracy per seed; failures; and the distance's name."""
    control: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    accuracy: dict[str, dict[int, float]] = defaultdict(dict)
    for original in originals:
        for c, metrics in original["before"].items():
            control[classes[int(c)]][original["seed"]] = metrics
        for name, value in original["sample_accuracy"].items():
            accuracy[name][original["seed"]] = value
    noise = {name: fa_noise({s: m["FA"] for s, m in by_seed.items()}, config.eval.forget_samples)
             for name, by_seed in control.items()}  # fmt: skip
    rows = [{"method": "Original", "strategy": None, "control": True, "per_class": _per_class(control)}]
    for name, entry in rows[0]["per_class"].items():
        entry["FA_noise"] = noise[name]

    grouped: dict[tuple[str, str], dict[str, dict[int, dict[str, float]]]] = defaultdict(lambda: defaultdict(dict))
    failures = []
    for record in records:
        if "failed" in record:
            failures.append({k: record[k] for k in ("class_name", "method", "strategy", "seed", "failed")})
            continue
        grouped[(record["method"], record["strategy"])][record["class_name"]][record["seed"]] = {
            **record["metrics"], "seconds": record["seconds"]}  # fmt: skip
    for (method, strategy), by_class in grouped.items():
        per_class = _per_class(by_class)
        for name, entry in per_class.items():
            run_fa = {s: m["FA"] for s, m in by_class[name].items()}
            original_fa = {s: m["FA"] for s, m in control[name].items()}
            entry["did_not_unlearn"] = did_not_unlearn(run_fa, original_fa, noise[name])
        rows.append({"method": method, "strategy": strategy, "control": False, "per_class": per_class,
                     "did_not_unlearn": sorted(n for n, e in per_class.items() if e["did_not_unlearn"])})  # fmt: skip

    sample_accuracy = {name: seed_summary(by_seed) for name, by_seed in accuracy.items()}
    means = [s["mean"] for s in sample_accuracy.values()]
    first = originals[0] if originals else {}
    return envelope(
        TASK, to_dict(config), environment, rows, seconds,
        distance=distance, classes=list(classes), seeds=sorted(accuracy[next(iter(accuracy))]) if accuracy else [],
        original={"sample_accuracy": sample_accuracy,
                  "sample_accuracy_mean": sum(means) / len(means) if means else None,
                  "recognised_classes": [n for n, s in sample_accuracy.items() if s["mean"] >= RECOGNISED],
                  "recognised_threshold": RECOGNISED,
                  "pretrain_seconds": first.get("pretrain_seconds"), "pretrain_steps": first.get("pretrain_steps"),
                  "classifier_seconds": first.get("classifier_seconds")},
        did_not_unlearn_rule=(f"mean FA over seeds >= the do-nothing row's (same seeds) - {NOISE_MULTIPLE:g} x FA_noise; "
                              "FA_noise = max(std over seeds of the do-nothing FA, 100 sqrt(p(1-p)/eval.forget_samples))"),
        failures=failures,
        # unlearning plus sampling of every run, as stored: unlike `seconds` it survives a resume
        run_seconds=sum(r.get("seconds", 0.0) + r.get("eval_seconds", 0.0) for r in records),
    )  # fmt: skip
