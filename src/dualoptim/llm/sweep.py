"""The LLM papers' tuning protocol on TOFU: forget learning rate x strategy, selected by OVR on task 1.

The DualOptim papers tune the forget learning rate of every (loss, strategy) by grid search with
the retain rate fixed and keep the rate of highest OVR on the first forget task (docs/design.md
§0.3). :func:`run_sweep` runs the TOFU benchmark once per factor (each pair's configured
forget rate times the factor) into ``out/factor-<f>/``, reads one point per (loss, strategy) from
its results, and writes ``sweep.json`` (the grid), ``sweep.md`` (its table) and ``best.yaml``, a
preset layer with the chosen rates in ``unlearn.forget_lrs``. The grid, the selection and the
extension past an end are the core's (:mod:`dualoptim.sweep`); the run store makes a rerun with
the same ``out`` resume: finished runs are read, never recomputed.
"""

from __future__ import annotations

import copy
import statistics
from pathlib import Path
from typing import Any

from dualoptim.io import write_json_atomic, write_text_atomic
from dualoptim.llm.benchmark import TofuBenchmark
from dualoptim.llm.config import TofuConfig, forget_lr_of, set_tuned_rates, tuned_rates_section, validate
from dualoptim.sweep import (
    Objective,
    best_rates,
    check_factors,
    grid_table,
    round_rate,
    run_grid,
    write_best_preset,
)

__all__ = ["OBJECTIVE", "run_sweep", "scaled_config", "sweep_points"]

#: the papers select the forget rate of highest OVR
OBJECTIVE = Objective("OVR", higher_is_better=True)
#: what a point records of the selection task's runs besides OVR
COMPONENTS = ("UFE", "TFE", "MU", "Forget Quality", "Model Utility")


def scaled_config(config: TofuConfig, factor: float, pairs: dict[str, list[str]] | None = None) -> TofuConfig:
    """``config`` with each (loss, strategy) forget rate times ``factor``, written into ``unlearn.forget_lrs``.

    ``pairs`` (loss -> strategies) narrows the losses and strategies run; None keeps them all.
    """
    scaled = copy.deepcopy(config)
    if pairs is not None:
        scaled.losses = [loss for loss in config.losses if loss in pairs]
        scaled.strategies = [s for s in config.strategies if any(s in wanted for wanted in pairs.values())]
    for loss in scaled.losses:
        for strategy in scaled.strategies:
            # rounded as best.yaml writes it (3 significant digits): a run of the tuned preset then has
            # the key of the sweep's own run (9 x 1e-3 is 0.009000000000000001 unrounded)
            rate = round_rate(factor * forget_lr_of(config, loss, strategy))
            set_tuned_rates(scaled, {loss: {strategy: rate}})  # alternate's one rate: unlearn.lrs
    return scaled


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def sweep_points(results: dict[str, Any], config: TofuConfig, select_task: str) -> dict[tuple[str, str], dict]:
    """One point per (loss, strategy) of a TOFU results.json: its forget rate and scores on ``select_task``.

    ``OVR`` (the score selected on) and the components are means over the seeds of ``select_task``;
    ``OVR_all_tasks`` is the row's mean over every task and seed, for the record. A run that stopped
    (non-finite loss) counts in ``failed`` and leaves the point without a score.
    """
    points = {}
    for row in results["rows"]:
        if row["strategy"] == "-":  # the target and the retain model
            continue
        mine = [r for r in row["runs"] if str(r["task"]) == select_task]
        failed = sum(1 for r in mine if r.get("stopped") or not r.get("metrics"))
        finished = [r["metrics"] for r in mine if not r.get("stopped") and r.get("metrics")]
        point: dict[str, Any] = {"forget_lr": forget_lr_of(config, row["loss"], row["strategy"]), "failed": failed}
        for name in ("OVR", *COMPONENTS):
            values = [m[name] for m in finished if m.get(name) is not None]
            point[name] = _mean(values) if values and not failed else None
        overall = row["metrics"].get("OVR")
        point["OVR_all_tasks"] = overall["mean"] if overall else None
        point["runs"] = len(mine)
        points[(row["loss"], row["strategy"])] = point
    return points


def run_sweep(
    config: TofuConfig,
    factors: list[float],
    out: str | Path,
    *,
    select_task: str = "1",
    extend: int = 0,
    progress: bool = True,
    command: list[str] | None = None,
    log=print,
) -> dict[str, Any]:
    """Run the benchmark once per factor into ``out/factor-<f>``; write ``sweep.json``, ``sweep.md``, ``best.yaml``.

    ``extend`` rounds run the next factor past an end of the grid where a pair's best OVR sits
    (:func:`dualoptim.sweep.run_grid`). The target, the retain models and the reference evaluations
    are made once and shared by every factor.
    """
    validate(config)
    factors = check_factors(factors)
    select_task = str(select_task)
    if select_task not in config.tasks:
        raise ValueError(f"the selection task {select_task!r} is not among the tasks run {config.tasks}")
    out = Path(out)
    benchmark: TofuBenchmark | None = None

    def run_factor(factor: float, pairs: dict[str, list[str]] | None) -> dict[tuple[str, str], dict]:
        nonlocal benchmark
        scaled = scaled_config(config, factor, pairs)
        log(f"sweep: forget learning rates x {factor:g} ({', '.join(scaled.losses)}; {', '.join(scaled.strategies)})")
        if benchmark is None:
            benchmark = TofuBenchmark(scaled, progress=progress, command=command)
        else:
            benchmark.config = scaled  # same data, target and references; only the rates differ
        results = benchmark.run(out / f"factor-{factor:g}")
        points = sweep_points(results, scaled, select_task)
        return {pair: p for pair, p in points.items() if pairs is None or pair[1] in pairs.get(pair[0], [])}

    grid, extended = run_grid(factors, run_factor, OBJECTIVE, extend)
    best = best_rates(grid, OBJECTIVE, "forget_lr")
    summary = {
        "task": "tofu",
        "selection": {"metric": OBJECTIVE.score, "higher_is_better": True, "task": select_task},
        "factors": factors,
        "extended": extended,
        "split": config.data.split,
        "tasks": list(config.tasks),
        "seeds": list(config.seeds),
        "grid": grid,
        "best_forget_lr": best,
    }
    write_json_atomic(out / "sweep.json", summary)
    table = grid_table(grid, OBJECTIVE, "forget_lr", best)
    title = f"Forget learning rate x strategy on TOFU {config.data.split}: OVR on task {select_task} (higher is better)"
    write_text_atomic(out / "sweep.md", f"{title}\n\n{table}")
    header = (
        f"forget learning rates of highest OVR on task {select_task} from `dualoptim sweep --task tofu`\n"
        f"(split {config.data.split}, factors {factors}, extended {[e['factor'] for e in extended]}, "
        f"seeds {config.seeds}); layer it after the base preset"
    )
    write_best_preset(out / "best.yaml", {"unlearn": tuned_rates_section(best)}, header)
    return summary
