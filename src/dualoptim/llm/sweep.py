"""The LLM papers' tuning protocol on TOFU: forget learning rate x strategy, selected by OVR.

The DualOptim papers tune the forget learning rate of every (loss, strategy) by grid search with
the retain rate fixed and keep the rate of highest OVR on the first forget task (docs/design.md
§0.3). :func:`run_sweep` runs the TOFU benchmark once per factor (each pair's configured
forget rate times the factor) into ``out/factor-<f>/``, reads one point per (loss, strategy) from
its results, and writes ``sweep.json`` (the grid), ``sweep.md`` (its table), ``sensitivity.png``
(OVR, UFE and MU against the rate, per strategy, ± their std) and ``best.yaml``, a preset layer
with the chosen rates in ``unlearn.forget_lrs``. One task and one seed cannot tell a gap of two
points from the 1-4 points tasks differ by, so the selection averages OVR over two runs or more
(``select_tasks`` x seeds) and reports its std at every rate; a rate whose runs did not unlearn is
never selected, and a pair whose best OVR is no higher than the do-nothing control's (the target,
scored as that loss's runs are) is refused. The grid, the selection and the extension past an end
are the core's (:mod:`dualoptim.sweep`); the run store makes a rerun with the same ``out``
resume: finished runs are read, never recomputed.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dualoptim.io import write_json_atomic, write_text_atomic
from dualoptim.llm.benchmark import TofuBenchmark
from dualoptim.llm.config import TofuConfig, forget_lr_of, set_tuned_rates, tuned_rates_section, validate
from dualoptim.llm.results import DDOF, DO_NOTHING, FORGET_SIDE, NOISE_FLOOR, is_targeted, with_controls
from dualoptim.metrics.aggregate import mean_std, metrics_over_runs, unlearning_check
from dualoptim.sweep import (
    DEFAULT_EXTEND,
    Objective,
    check_factors,
    grid_edges,
    grid_table,
    round_rate,
    run_grid,
    select,
    selected_lines,
    selection_notes,
    write_best_preset,
)

__all__ = ["OBJECTIVE", "apply_rate", "control_scores", "run_sweep", "scaled_config", "sweep_points"]

#: the papers select the forget rate of highest OVR
OBJECTIVE = Objective("OVR", higher_is_better=True, display_scale=100.0)
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
            apply_rate(scaled, loss, strategy, rate)
    return scaled


def apply_rate(config: TofuConfig, loss: str, strategy: str, rate: float) -> None:
    """The one place a swept rate enters a configuration: ``unlearn.forget_lrs.<loss>.<strategy>``, or
    for a single-rate strategy (alternate) its one rate, ``unlearn.lrs`` (:func:`set_tuned_rates`)."""
    set_tuned_rates(config, {loss: {strategy: rate}})


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _tasks(select_tasks: str | Sequence[str]) -> list[str]:
    return [str(select_tasks)] if isinstance(select_tasks, (str, int)) else [str(t) for t in select_tasks]


def sweep_points(
    results: dict[str, Any], config: TofuConfig, select_tasks: str | Sequence[str]
) -> dict[tuple[str, str], dict]:
    """One point per (loss, strategy) of a TOFU results.json: its forget rate and scores on ``select_tasks``.

    ``OVR`` (the score selected on) and the components are means over the runs (tasks x seeds) of
    ``select_tasks``, ``criterion_std`` and ``<name> std`` their sample std (None for one run);
    ``OVR_all_tasks`` is the row's mean over every task and seed, for the record. A run that stopped
    (non-finite loss) counts in ``failed`` and leaves the point without a score. ``did_not_unlearn``
    compares the selection runs' forget ROUGE and Probability with the target's on the same tasks.
    """
    tasks = _tasks(select_tasks)
    target = next((r for r in results["rows"] if r["loss"] == DO_NOTHING and r["strategy"] == "-"), None)
    control_runs = [r for r in (target or {}).get("runs", []) if str(r["task"]) in tasks]
    control_metrics = metrics_over_runs(control_runs, DDOF)[0] if control_runs else {}
    points = {}
    for row in results["rows"]:
        if row["strategy"] == "-":  # the target and the retain model
            continue
        mine = [r for r in row["runs"] if str(r["task"]) in tasks]
        failed = sum(1 for r in mine if r.get("stopped") or not r.get("metrics"))
        finished = [r["metrics"] for r in mine if not r.get("stopped") and r.get("metrics")]
        point: dict[str, Any] = {"forget_lr": forget_lr_of(config, row["loss"], row["strategy"]), "failed": failed}
        for name in ("OVR", *COMPONENTS):
            values = [m[name] for m in finished if m.get(name) is not None]
            whole = bool(values) and not failed and len(values) == len(finished)
            point[name] = _mean(values) if whole else None
            point[f"{name} std"] = mean_std(values, DDOF)[1] if whole else None
        point["criterion_std"] = point["OVR std"]
        check = unlearning_check(metrics_over_runs([{"metrics": m} for m in finished], DDOF)[0],
                                 control_metrics, FORGET_SIDE, NOISE_FLOOR) if finished else None  # fmt: skip
        point["did_not_unlearn"] = check["did_not_unlearn"] if check else None
        overall = row["metrics"].get("OVR")
        point["OVR_all_tasks"] = overall["mean"] if overall else None
        point["runs"] = len(mine)
        points[(row["loss"], row["strategy"])] = point
    return points


def control_scores(results: dict[str, Any], losses: Sequence[str], select_tasks: Sequence[str]) -> dict[str, float | None]:
    """Loss -> the do-nothing control's OVR on ``select_tasks``: the target scored as that loss's runs are
    (targeted for IDK/DPO losses), the mean over the tasks; None without a target evaluation."""
    control = with_controls(results).get("do_nothing")
    scores: dict[str, float | None] = {}
    for loss in losses:
        if control is None:
            scores[loss] = None
            continue
        runs = control["targeted" if is_targeted(loss) else "untargeted"]["runs"]
        values = [r["OVR"] for r in runs if r["task"] in select_tasks]
        scores[loss] = _mean(values) if values and all(v is not None for v in values) else None
    return scores


def run_sweep(
    config: TofuConfig,
    factors: list[float],
    out: str | Path,
    *,
    select_tasks: Sequence[str] | None = None,
    extend: int = DEFAULT_EXTEND,
    progress: bool = True,
    command: list[str] | None = None,
    log=print,
) -> dict[str, Any]:
    """Run the benchmark once per factor into ``out/factor-<f>``; write ``sweep.json``, ``sweep.md``,
    ``sensitivity.png`` and ``best.yaml``.

    ``select_tasks`` (default: every task run) are the forget tasks whose mean OVR over them and the
    seeds selects; there must be two runs or more per rate. ``extend`` rounds run the next factor past
    an end of the grid where a pair's best OVR sits (:func:`dualoptim.sweep.run_grid`); an edge left
    after them is reported. The target, the retain models and the reference evaluations are made once
    and shared by every factor.
    """
    from dualoptim.llm.report import plot_sensitivity

    validate(config)
    factors = check_factors(factors)
    tasks = list(config.tasks) if select_tasks is None else _tasks(select_tasks)
    for task in tasks:
        if task not in config.tasks:
            raise ValueError(f"the selection task {task!r} is not among the tasks run {config.tasks}")
    if len(tasks) * len(config.seeds) < 2:
        raise ValueError(
            f"selection on tasks {tasks} x seeds {config.seeds} is one run per rate, which cannot tell a difference "
            "from task-to-task noise: select on two tasks or more (--select-tasks 1,2) or two seeds or more"
        )
    out = Path(out)
    benchmark: TofuBenchmark | None = None
    controls_by_loss: dict[str, float | None] = {}

    def run_factor(factor: float, pairs: dict[str, list[str]] | None) -> dict[tuple[str, str], dict]:
        nonlocal benchmark
        scaled = scaled_config(config, factor, pairs)
        log(f"sweep: forget learning rates x {factor:g} ({', '.join(scaled.losses)}; {', '.join(scaled.strategies)})")
        if benchmark is None:
            benchmark = TofuBenchmark(scaled, progress=progress, command=command)
        else:
            benchmark.config = scaled  # same data, target and references; only the rates differ
        results = benchmark.run(out / f"factor-{factor:g}")
        if not controls_by_loss:  # the same target at every factor
            controls_by_loss.update(control_scores(results, config.losses, tasks))
        points = sweep_points(results, scaled, tasks)
        return {pair: p for pair, p in points.items() if pairs is None or pair[1] in pairs.get(pair[0], [])}

    grid, extended = run_grid(factors, run_factor, OBJECTIVE, extend)
    controls = {loss: {s: controls_by_loss.get(loss) for s in strategies} for loss, strategies in grid.items()}
    best, refused = select(grid, OBJECTIVE, "forget_lr", controls)
    edges = grid_edges(grid, OBJECTIVE, "forget_lr", extend)
    summary = {
        "task": "tofu",
        "selection": {"metric": OBJECTIVE.score, "higher_is_better": True, "tasks": tasks, "seeds": list(config.seeds),
                      "std": "sample std (ddof 1) over the selection runs"},  # fmt: skip
        "factors": factors,
        "extended": extended,
        "extend": extend,
        "split": config.data.split,
        "tasks": list(config.tasks),
        "seeds": list(config.seeds),
        "do_nothing": controls_by_loss,
        "grid": grid,
        "best_forget_lr": best,
        "edges": edges,
        "refused": refused,
    }
    write_json_atomic(out / "sweep.json", summary)
    table = grid_table(grid, OBJECTIVE, "forget_lr", best, controls, edges, refused)
    on = f"tasks {', '.join(tasks)} x seeds {', '.join(str(s) for s in config.seeds)}"
    title = (f"Forget learning rate x strategy on TOFU {config.data.split}: OVR ± sample std over {on} (higher is "
             "better); do nothing = the target, scored as the loss's runs are")  # fmt: skip
    write_text_atomic(out / "sweep.md", f"{title}\n\n{table}")
    plot_sensitivity(summary, out / "sensitivity.png")
    header = "\n".join([
        f"forget learning rates of highest OVR over {on} from `dualoptim sweep --task tofu`",
        f"(split {config.data.split}, factors {factors}, extended {[e['factor'] for e in extended]}); "
        "layer it after the base preset",
        *selected_lines(grid, OBJECTIVE, "forget_lr", best),
        *selection_notes(edges, refused, "forget_lr"),
    ])  # fmt: skip
    write_best_preset(out / "best.yaml", {"unlearn": tuned_rates_section(best)}, header)
    return summary
