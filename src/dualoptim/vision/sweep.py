"""The papers' tuning protocol and its sensitivity map: a learning-rate grid, Gap and Std at each rate.

The papers tune the forget learning rate by grid search with the retain rate fixed and pick the
lowest Gap; they argue that DualOptim makes the result less sensitive to that choice. A sweep
runs the benchmark once per factor (every configured rate of one side times the factor), keeps
the rate of lowest Gap per (method, strategy), and records Gap and Std at every rate: the
sensitivity map (``docs/design.md`` §8.2). When a (method, strategy)'s best rate sits at an end
of its grid, the grid is extended past that end, one step at a time, up to ``extend`` rounds; an
edge left after them is reported. The selection is over two or more seeds (the criterion's std
over seeds, ``seed_gap_std``, is reported at every rate), never picks a rate whose runs did not
unlearn, and refuses a pair whose best Gap is no lower than the do-nothing row's (§0.3).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from dualoptim.io import write_json_atomic, write_text_atomic
from dualoptim.metrics.aggregate import METRICS, mean_std
from dualoptim.runs import slug
from dualoptim.sweep import (
    DEFAULT_EXTEND,
    Objective,
    check_factors,
    grid_edges,
    grid_table,
    run_grid,
    select,
    selected_lines,
    selection_notes,
    write_best_preset,
)
from dualoptim.vision.benchmark import Benchmark, resolve_settings
from dualoptim.vision.config import MethodConfig, VisionConfig
from dualoptim.vision.methods import METHODS
from dualoptim.vision.plots import plot_sensitivity
from dualoptim.vision.results import DDOF, strategy_of

__all__ = ["OBJECTIVE", "SIDES", "run_sweep", "scaled_config", "sensitivity_points"]

#: which learning rate a sweep scales
SIDES = ("forget", "retain")
#: the papers select the rate of lowest Gap
OBJECTIVE = Objective("Gap", higher_is_better=False)


def _has_side(method: str, side: str) -> bool:
    spec = METHODS.get(method)
    return spec.has_forget if side == "forget" else spec.has_retain


def scaled_config(config: VisionConfig, factor: float, side: str = "forget") -> VisionConfig:
    """``config`` with every (method, strategy) ``side`` learning rate multiplied by ``factor``.

    Methods without a loss on that side (FT has no forget loss) have no rate to tune and are left out.
    """
    if side not in SIDES:
        raise ValueError(f"unknown learning-rate side {side!r}; valid: {', '.join(SIDES)}")
    field = f"{side}_lr"
    scaled = copy.deepcopy(config)
    scaled.methods = [m for m in config.methods if _has_side(m, side)]
    for method in scaled.methods:
        overrides = scaled.unlearn.methods.setdefault(method, MethodConfig())
        for strategy in config.strategies:
            rate = getattr(resolve_settings(config, method, strategy), field)
            getattr(overrides, field)[strategy] = factor * rate
    return scaled


def sensitivity_points(results: dict[str, Any], factor: float) -> dict[tuple[str, str], dict[str, Any]]:
    """One point of the map per (method, strategy) of a benchmark's results.json.

    ``Gap`` and ``Std`` are the papers' scores (of the means over seeds); ``seed_gap_mean`` and
    ``seed_gap_std`` are the mean and std over seeds of each seed's own Gap,
    :math:`\\tfrac14 \\sum_M |M_s - M^*|`, against the same retrain means :math:`M^*`: how far one
    seed's result can land from the Gap the table reports, and the std the selection reports
    (``criterion_std``). ``did_not_unlearn`` is the row's check against the do-nothing control.
    """
    reference = {m: results["retrain"]["metrics"][m]["mean"] for m in METRICS}
    points = {}
    for row in results["rows"]:
        seed_gaps = [math.fsum(abs(s[m] - reference[m]) for m in METRICS) / len(METRICS) for s in row["per_seed"]]
        seed_mean, seed_std = mean_std(seed_gaps, DDOF) if seed_gaps else (None, None)
        points[(row["method"], strategy_of(row))] = {
            "factor": factor,
            "Gap": row["Gap"],
            "Std": row["Std"],
            "seed_gap_mean": seed_mean,
            "seed_gap_std": seed_std,
            "per_seed_gap": seed_gaps,
            "criterion_std": seed_std,
            "did_not_unlearn": row.get("did_not_unlearn"),
            "failed": len(row["failed"]),
        }
    return points




def _folder(factor: float) -> str:
    return f"factor-{factor:g}"


def run_sweep(
    config: VisionConfig,
    factors: list[float],
    out: str | Path,
    *,
    side: str = "forget",
    extend: int = DEFAULT_EXTEND,
    progress_bar: bool = True,
    command: list[str] | None = None,
    log=print,
) -> dict[str, Any]:
    """Run the benchmark once per factor into ``out/factor-<f>``; write ``sweep.json``, ``best.yaml``
    and the sensitivity map (``sensitivity.png``, one ``sensitivity-<method>.png`` per method).

    After the grid, every (method, strategy) whose lowest Gap sits at an end of its grid is run at
    the next factor past that end, up to ``extend`` times (0: never extend); finished runs are
    read from the run store, never recomputed. ``best.yaml`` is a preset fragment with the rate of
    lowest Gap per (method, strategy): ``--preset base --preset out/best.yaml``; its comments, the
    table ``sweep.md`` and ``sweep.json`` name every edge left and every pair refused (§0.3).
    Selecting on one seed cannot tell a difference from noise, so two seeds or more are required.
    """
    if side not in SIDES:
        raise ValueError(f"unknown learning-rate side {side!r}; valid: {', '.join(SIDES)}")
    factors = check_factors(factors)
    if len(config.seeds) < 2:
        raise ValueError(
            f"a sweep selects on two or more seeds (one cannot tell a difference from seed noise), got seeds {config.seeds}"
        )
    if not any(_has_side(m, side) for m in config.methods):
        raise ValueError(f"none of the methods {config.methods} has a {side} loss, so there is no {side} lr to tune")
    out = Path(out)
    field = f"{side}_lr"
    benchmark: Benchmark | None = None
    do_nothing: dict[str, Any] = {}

    def run_factor(factor: float, pairs: dict[str, list[str]] | None) -> dict[tuple[str, str], dict[str, Any]]:
        nonlocal benchmark
        subset = config
        if pairs is not None:
            # Only the (method, strategy) pairs whose best rate sits at this end run here.
            subset = copy.deepcopy(config)
            subset.methods = [m for m in config.methods if m in pairs]
            subset.strategies = [s for s in config.strategies if any(s in v for v in pairs.values())]
        scaled = scaled_config(subset, factor, side)
        log(f"sweep: {side} learning rates x {factor:g} ({', '.join(scaled.methods)})")
        if benchmark is None:
            benchmark = Benchmark(scaled, progress_bar=progress_bar, log=log, command=command)
        else:
            benchmark.config = scaled  # same data and original model; only learning rates differ
        results = benchmark.run(out / _folder(factor))
        if results.get("do_nothing"):  # the same original model at every factor
            do_nothing.update(Gap=results["do_nothing"]["Gap"], Std=results["do_nothing"]["Std"])
        points = sensitivity_points(results, factor)
        for (method, strategy), point in points.items():
            point[field] = getattr(resolve_settings(scaled, method, strategy), field)
        return points

    grid, extended = run_grid(factors, run_factor, OBJECTIVE, extend)
    controls = {m: {s: do_nothing.get("Gap") for s in strategies} for m, strategies in grid.items()}
    best, refused = select(grid, OBJECTIVE, field, controls)
    edges = grid_edges(grid, OBJECTIVE, field, extend)
    summary = {
        "side": side,
        "factors": factors,
        "extended": extended,
        "extend": extend,
        "seeds": config.seeds,
        "std": "population std over seeds (ddof 0)",
        "do_nothing": do_nothing or None,
        "grid": grid,
        f"best_{field}": best,
        "edges": edges,
        "refused": refused,
    }
    write_json_atomic(out / "sweep.json", summary)
    title = f"{side} learning rate x strategy: Gap ± std over seeds {config.seeds} of each seed's Gap (lower is better)"
    write_text_atomic(out / "sweep.md", f"{title}\n\n{grid_table(grid, OBJECTIVE, field, best, controls, edges, refused)}")
    fragment = {"unlearn": {"methods": {m: {field: lrs} for m, lrs in best.items()}}}
    header = "\n".join([
        f"{side} learning rates of lowest Gap from `dualoptim sweep` "
        f"(factors {factors}, extended {[e['factor'] for e in extended]}, seeds {config.seeds})",
        *selected_lines(grid, OBJECTIVE, field, best),
        *selection_notes(edges, refused, field),
    ])  # fmt: skip
    write_best_preset(out / "best.yaml", fragment, header)
    plot_sensitivity(summary, out / "sensitivity.png")
    for method in grid:
        plot_sensitivity(summary, out / f"sensitivity-{slug(method)}.png", methods=[method])
    return summary
