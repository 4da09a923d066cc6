"""The papers' tuning protocol, shared by every task: a grid of learning-rate factors, the best rate.

The DualOptim papers tune the forget learning rate by grid search with the retain rate fixed
(docs/design.md §0.3): every configured rate times each factor, one benchmark per factor, and
per (method, strategy) the rate of the best score: the lowest Gap on image classification, the
highest OVR (on task 1) on TOFU. A task's sweep runs its benchmark; this module holds what does not
depend on the task: the factors' checks, the grid (points per method and strategy, extended past
an end where the best score sits), the selection, the table and the preset layer of tuned rates.

A *point* is a dict with at least ``factor``, the task's rate field (``forget_lr``), the score
(``Gap``, ``OVR``; None when it could not be computed) and ``failed`` (runs that stopped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualoptim.io import write_text_atomic

__all__ = [
    "Grid",
    "Objective",
    "best_point",
    "best_rates",
    "check_factors",
    "edge_extension",
    "grid_table",
    "round_rate",
    "run_grid",
    "write_best_preset",
]

#: method -> strategy -> points sorted by factor
Grid = dict[str, dict[str, list[dict[str, Any]]]]


@dataclass(frozen=True)
class Objective:
    """The score a sweep selects on and its direction (Gap: lower is better; OVR: higher)."""

    score: str
    higher_is_better: bool = False

    def finished(self, points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Points with a score and no failed run: the only ones a selection may pick."""
        return [p for p in points if p.get(self.score) is not None and not p.get("failed")]

    def sort_key(self, point: dict[str, Any]) -> float:
        return -point[self.score] if self.higher_is_better else point[self.score]


def check_factors(factors: Sequence[float]) -> list[float]:
    """``factors`` as floats; ``ValueError`` unless they are positive, distinct and at least one."""
    factors = [float(f) for f in factors]
    if not factors or any(not f > 0 for f in factors):
        raise ValueError(f"sweep factors must be positive numbers, got {factors}")
    if len(set(factors)) != len(factors):
        raise ValueError(f"sweep factors must differ, got {factors}")
    return factors


def round_rate(rate: float) -> float:
    """3 significant digits: 0.3 x 3e-4 is 9e-05, not 8.999999999999999e-05."""
    return float(f"{rate:.3g}")


def best_point(points: Sequence[dict[str, Any]], objective: Objective) -> dict[str, Any] | None:
    """The finished point of best score (the smallest factor on a tie), or None when none finished."""
    finished = sorted(objective.finished(points), key=lambda p: p["factor"])
    return min(finished, key=objective.sort_key) if finished else None


def best_rates(grid: Grid, objective: Objective, field: str) -> dict[str, dict[str, float]]:
    """Method -> strategy -> the ``field`` rate of the best point (pairs without one are left out)."""
    best: dict[str, dict[str, float]] = {}
    for method, strategies in grid.items():
        for strategy, points in strategies.items():
            point = best_point(points, objective)
            if point is not None:
                best.setdefault(method, {})[strategy] = round_rate(point[field])
    return best


def edge_extension(points: Sequence[dict[str, Any]], objective: Objective) -> float | None:
    """The next factor past the end of the grid where the best score sits, or None when it is inside.

    The step repeats the ratio of the last two factors at that end (x2 after 5 -> 10 gives 20).
    A grid of one factor, or one whose every point failed, is not extended.
    """
    factors = sorted(p["factor"] for p in points)
    best = best_point(points, objective)
    if len(factors) < 2 or best is None:
        return None
    if best["factor"] == factors[0]:
        return float(f"{factors[0] * factors[0] / factors[1]:.4g}")
    if best["factor"] == factors[-1]:
        return float(f"{factors[-1] * factors[-1] / factors[-2]:.4g}")
    return None


def run_grid(
    factors: Sequence[float],
    run_factor: Callable[[float, dict[str, list[str]] | None], dict[tuple[str, str], dict[str, Any]]],
    objective: Objective,
    extend: int = 0,
) -> tuple[Grid, list[dict[str, Any]]]:
    """Run every factor, then extend the grid past an end where a pair's best score sits.

    ``run_factor(factor, pairs)`` runs the benchmark at ``factor`` for ``pairs`` (method ->
    strategies; None: every configured pair) and returns a point per (method, strategy). Up to
    ``extend`` rounds, each pair whose best point sits at an end of its grid runs at
    :func:`edge_extension`'s next factor. Returns the grid and the extensions made.
    """
    if extend < 0:
        raise ValueError(f"extend must be >= 0 (rounds of grid extension), got {extend}")
    grid: Grid = {}

    def add(factor: float, pairs: dict[str, list[str]] | None) -> None:
        for (method, strategy), point in run_factor(factor, pairs).items():
            line = grid.setdefault(method, {}).setdefault(strategy, [])
            line.append({**point, "factor": factor})
            line.sort(key=lambda p: p["factor"])

    for factor in check_factors(factors):
        add(factor, None)
    extended: list[dict[str, Any]] = []
    for _ in range(extend):
        wanted: dict[float, dict[str, list[str]]] = {}
        for method, strategies in grid.items():
            for strategy, points in strategies.items():
                factor = edge_extension(points, objective)
                if factor is not None:
                    wanted.setdefault(factor, {}).setdefault(method, []).append(strategy)
        if not wanted:
            break
        for factor, pairs in sorted(wanted.items()):
            add(factor, pairs)
            extended.append({"factor": factor, "pairs": pairs})
    return grid, extended


def grid_table(grid: Grid, objective: Objective, field: str, best: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per (method, strategy), the score at each rate, the chosen rate."""
    lines = [
        f"| Method | Strategy | {objective.score} at each {field} | best {field} |",
        "|---|---|---|---|",
    ]
    for method, strategies in grid.items():
        for strategy, points in strategies.items():
            cells = ", ".join(
                f"{p[field]:.2g}: " + ("failed" if p.get(objective.score) is None or p.get("failed")
                                      else f"{p[objective.score]:.2f}")
                for p in points
            )  # fmt: skip
            lines.append(f"| {method} | {strategy} | {cells} | {best.get(method, {}).get(strategy, '–')} |")
    return "\n".join(lines) + "\n"


def write_best_preset(path: str | Path, fragment: dict[str, Any], header: str) -> None:
    """A preset layer (YAML) of tuned rates, ``header`` as its first comment line(s); written atomically."""
    import yaml

    comment = "".join(f"# {line}\n" for line in header.splitlines())
    write_text_atomic(Path(path), comment + yaml.safe_dump(fragment, sort_keys=False))
