"""The papers' tuning protocol: grid-search the forget learning rate, retain learning rate fixed, pick by Gap."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from dualoptim.io import write_json_atomic
from dualoptim.sweep import Objective, best_rates, check_factors, write_best_preset
from dualoptim.vision.benchmark import Benchmark, resolve_settings
from dualoptim.vision.config import MethodConfig, VisionConfig
from dualoptim.vision.methods import METHODS

__all__ = ["OBJECTIVE", "run_sweep", "scaled_config"]

#: the papers select the forget rate of lowest Gap
OBJECTIVE = Objective("Gap", higher_is_better=False)


def scaled_config(config: VisionConfig, factor: float) -> VisionConfig:
    """``config`` with every (method, strategy) forget learning rate multiplied by ``factor``.

    Methods without a forget loss (FT) have no forget learning rate to tune and are left out.
    """
    scaled = copy.deepcopy(config)
    scaled.methods = [m for m in config.methods if METHODS.get(m).has_forget]
    for method in scaled.methods:
        overrides = scaled.unlearn.methods.setdefault(method, MethodConfig())
        for strategy in config.strategies:
            overrides.forget_lr[strategy] = factor * resolve_settings(config, method, strategy).forget_lr
    return scaled


def run_sweep(
    config: VisionConfig,
    factors: list[float],
    out: str | Path,
    *,
    progress_bar: bool = True,
    command: list[str] | None = None,
    log=print,
) -> dict[str, Any]:
    """Run the benchmark once per factor into ``out/factor-<f>``; write ``sweep.json`` and ``best.yaml``.

    ``best.yaml`` is a preset fragment with the forget learning rate of lowest Gap per
    (method, strategy); pass it after the base preset: ``--preset base --preset out/best.yaml``.
    """
    factors = check_factors(factors)
    if not any(METHODS.get(m).has_forget for m in config.methods):
        raise ValueError(
            f"none of the methods {config.methods} has a forget loss, so there is no forget lr to tune"
        )
    out = Path(out)
    benchmark: Benchmark | None = None
    grid: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for factor in factors:
        scaled = scaled_config(config, factor)
        log(f"sweep: forget learning rates x {factor:g}")
        if benchmark is None:
            benchmark = Benchmark(scaled, progress_bar=progress_bar, log=log, command=command)
        else:
            benchmark.config = scaled  # same data and original model; only learning rates differ
        results = benchmark.run(out / f"factor-{factor:g}")
        for row in results["rows"]:
            lr = resolve_settings(scaled, row["method"], row["strategy"]).forget_lr
            grid.setdefault(row["method"], {}).setdefault(row["strategy"], []).append(
                {
                    "factor": factor,
                    "forget_lr": lr,
                    "Gap": row["Gap"],
                    "Std": row["Std"],
                    "failed": len(row["failed"]),
                }
            )
    best = best_rates(grid, OBJECTIVE, "forget_lr")
    summary = {"factors": factors, "seeds": config.seeds, "grid": grid, "best_forget_lr": best}
    write_json_atomic(out / "sweep.json", summary)
    fragment = {"unlearn": {"methods": {m: {"forget_lr": lrs} for m, lrs in best.items()}}}
    header = f"forget learning rates of lowest Gap from `dualoptim sweep` (factors {factors}, seeds {config.seeds})"
    write_best_preset(out / "best.yaml", fragment, header)
    return summary
