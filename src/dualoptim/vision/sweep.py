"""The papers' tuning protocol and its sensitivity map: a learning-rate grid, Gap and Std at each rate.

The papers tune the forget learning rate by grid search with the retain rate fixed and pick the
lowest Gap; they argue that DualOptim makes the result less sensitive to that choice. A sweep
runs the benchmark once per factor (every configured rate of one side times the factor), keeps
the rate of lowest Gap per (method, strategy), and records Gap and Std at every rate: the
sensitivity map (``docs/design.md``, "The sensitivity map"). When a (method, strategy)'s best
rate sits at an end of its grid, the grid is extended past that end, one step at a time.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from dualoptim.io import write_json_atomic, write_text_atomic
from dualoptim.metrics.aggregate import METRICS, mean_std
from dualoptim.runs import slug
from dualoptim.vision.benchmark import Benchmark, resolve_settings
from dualoptim.vision.config import MethodConfig, VisionConfig
from dualoptim.vision.methods import METHODS
from dualoptim.vision.plots import plot_sensitivity
from dualoptim.vision.results import DDOF, strategy_of

__all__ = ["SIDES", "edge_extensions", "run_sweep", "scaled_config", "sensitivity_points"]

#: which learning rate a sweep scales
SIDES = ("forget", "retain")


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
    seed's result can land from the Gap the table reports.
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
            "failed": len(row["failed"]),
        }
    return points


def edge_extensions(points: list[dict[str, Any]]) -> float | None:
    """The next factor past the end of the grid where the lowest Gap sits, or None when it is inside.

    The step repeats the ratio of the last two factors at that end (x2 after 5 -> 10, giving 20).
    A grid of one factor, or one whose every point failed, is not extended.
    """
    finished = sorted((p for p in points if p["Gap"] is not None and p["failed"] == 0), key=lambda p: p["factor"])
    factors = sorted(p["factor"] for p in points)
    if len(factors) < 2 or not finished:
        return None
    best = min(finished, key=lambda p: p["Gap"])["factor"]
    if best == factors[0]:
        return factors[0] * factors[0] / factors[1]
    if best == factors[-1]:
        return factors[-1] * factors[-1] / factors[-2]
    return None


def _folder(factor: float) -> str:
    return f"factor-{factor:g}"


def run_sweep(
    config: VisionConfig,
    factors: list[float],
    out: str | Path,
    *,
    side: str = "forget",
    extend: int = 2,
    progress_bar: bool = True,
    command: list[str] | None = None,
    log=print,
) -> dict[str, Any]:
    """Run the benchmark once per factor into ``out/factor-<f>``; write ``sweep.json``, ``best.yaml``
    and the sensitivity map (``sensitivity.png``, one ``sensitivity-<method>.png`` per method).

    After the grid, every (method, strategy) whose lowest Gap sits at an end of its grid is run at
    the next factor past that end, up to ``extend`` times (0: never extend); finished runs are
    read from the run store, never recomputed. ``best.yaml`` is a preset fragment with the rate of
    lowest Gap per (method, strategy): ``--preset base --preset out/best.yaml``.
    """
    if side not in SIDES:
        raise ValueError(f"unknown learning-rate side {side!r}; valid: {', '.join(SIDES)}")
    if not factors or any(not f > 0 for f in factors):
        raise ValueError(f"sweep factors must be positive numbers, got {factors}")
    if len(set(factors)) != len(factors):
        raise ValueError(f"sweep factors must differ, got {factors}")
    if extend < 0:
        raise ValueError(f"extend must be >= 0 (rounds of grid extension), got {extend}")
    if not any(_has_side(m, side) for m in config.methods):
        raise ValueError(f"none of the methods {config.methods} has a {side} loss, so there is no {side} lr to tune")
    out = Path(out)
    benchmark: Benchmark | None = None
    grid: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def run_factor(factor: float, subset: VisionConfig) -> None:
        nonlocal benchmark
        scaled = scaled_config(subset, factor, side)
        log(f"sweep: {side} learning rates x {factor:g} ({', '.join(scaled.methods)})")
        if benchmark is None:
            benchmark = Benchmark(scaled, progress_bar=progress_bar, log=log, command=command)
        else:
            benchmark.config = scaled  # same data and original model; only learning rates differ
        results = benchmark.run(out / _folder(factor))
        for (method, strategy), point in sensitivity_points(results, factor).items():
            point[f"{side}_lr"] = getattr(resolve_settings(scaled, method, strategy), f"{side}_lr")
            line = grid.setdefault(method, {}).setdefault(strategy, [])
            line.append(point)
            line.sort(key=lambda p: p["factor"])

    for factor in factors:
        run_factor(factor, config)
    extended = []
    for _ in range(extend):
        wanted: dict[float, dict[str, list[str]]] = {}
        for method, strategies in grid.items():
            for strategy, points in strategies.items():
                factor = edge_extensions(points)
                if factor is not None:
                    wanted.setdefault(float(f"{factor:.4g}"), {}).setdefault(method, []).append(strategy)
        if not wanted:
            break
        for factor, pairs in sorted(wanted.items()):
            # Only the (method, strategy) pairs whose best rate sits at this end run here.
            subset = copy.deepcopy(config)
            subset.methods = [m for m in config.methods if m in pairs]
            subset.strategies = [s for s in config.strategies if any(s in v for v in pairs.values())]
            run_factor(factor, subset)
            extended.append({"factor": factor, "pairs": pairs})
    field = f"{side}_lr"
    best: dict[str, dict[str, float]] = {}
    for method, strategies in grid.items():
        for strategy, points in strategies.items():
            finished = [p for p in points if p["Gap"] is not None and p["failed"] == 0]
            if finished:
                # 3 significant digits: 0.3 x 3e-4 is 9e-05, not 8.999999999999999e-05
                best.setdefault(method, {})[strategy] = float(f"{min(finished, key=lambda p: p['Gap'])[field]:.3g}")
    summary = {
        "side": side,
        "factors": factors,
        "extended": extended,
        "seeds": config.seeds,
        "std": "population std over seeds (ddof 0)",
        "grid": grid,
        f"best_{field}": best,
    }
    write_json_atomic(out / "sweep.json", summary)
    import yaml

    fragment = {"unlearn": {"methods": {m: {field: lrs} for m, lrs in best.items()}}}
    header = (
        f"# {side} learning rates of lowest Gap from `dualoptim sweep` "
        f"(factors {factors}, extended {[e['factor'] for e in extended]}, seeds {config.seeds})\n"
    )
    write_text_atomic(out / "best.yaml", header + yaml.safe_dump(fragment, sort_keys=False))
    plot_sensitivity(summary, out / "sensitivity.png")
    for method in grid:
        plot_sensitivity(summary, out / f"sensitivity-{slug(method)}.png", methods=[method])
    return summary
