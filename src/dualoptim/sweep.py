"""The papers' tuning protocol, shared by every task: a grid of learning-rate factors, the best rate.

The DualOptim papers tune the forget learning rate by grid search with the retain rate fixed
(docs/design.md §0.3): every configured rate times each factor, one benchmark per factor, and
per (method, strategy) the rate of the best score: the lowest Gap on image classification, the
highest OVR (on task 1) on TOFU. A task's sweep runs its benchmark; this module holds what does not
depend on the task: the factors' checks, the grid (points per method and strategy, extended past
an end where the best score sits), the selection, the table and the preset layer of tuned rates.

A *point* is a dict with at least ``factor``, the task's rate field (``forget_lr``), the score
(``Gap``, ``OVR``; None when it could not be computed) and ``failed`` (runs that stopped); the tasks
add ``criterion_std`` (the score's std over the seeds or tasks selected on) and ``did_not_unlearn``
(the runs stayed within seed noise of the do-nothing control, ``docs/design.md`` §4.3).

The selection is guarded both ways (``docs/design.md`` §0.3): a point whose runs did not unlearn is
never selected, and a pair whose best point does not beat the do-nothing control's score is
*refused*: no rate is written for it, and the table and ``best.yaml`` say why, naming both scores.
A pair whose best rate still sits at an end of its grid after the last extension is reported as
an *edge* with the reason (the extension limit, or extension off).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualoptim.io import write_text_atomic

__all__ = [
    "DEFAULT_EXTEND",
    "DEFAULT_FACTORS",
    "Grid",
    "Objective",
    "best_point",
    "best_rates",
    "check_factors",
    "edge_extension",
    "grid_edges",
    "grid_table",
    "round_rate",
    "run_grid",
    "select",
    "selected_lines",
    "selection_notes",
    "write_best_preset",
]

#: method -> strategy -> points sorted by factor
Grid = dict[str, dict[str, list[dict[str, Any]]]]
#: method -> strategy -> a score (the do-nothing control's, per pair)
Controls = dict[str, dict[str, float | None]]
#: steps of 2x around the configured rate: fine enough to resolve differences of a few points
DEFAULT_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: rounds of extension past an edge before the edge is reported as such
DEFAULT_EXTEND = 4


@dataclass(frozen=True)
class Objective:
    """The score a sweep selects on, its direction (Gap: lower is better; OVR: higher) and the
    multiplier its tables print it with (TOFU scores are fractions, printed in percent)."""

    score: str
    higher_is_better: bool = False
    display_scale: float = 1.0

    def show(self, value: float) -> str:
        """``value`` as the tables print it (2 decimals, after ``display_scale``)."""
        return f"{self.display_scale * value:.2f}"

    def finished(self, points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Points with a score, no failed run and runs that unlearned: the only ones a selection may pick."""
        return [
            p for p in points if p.get(self.score) is not None and not p.get("failed") and not p.get("did_not_unlearn")
        ]

    def sort_key(self, point: dict[str, Any]) -> float:
        return -point[self.score] if self.higher_is_better else point[self.score]

    def beats(self, score: float, other: float) -> bool:
        """``score`` strictly better than ``other`` in this objective's direction."""
        return score > other if self.higher_is_better else score < other


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


def select(
    grid: Grid, objective: Objective, field: str, controls: Controls | None = None
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Method -> strategy -> the ``field`` rate of the best point, and the pairs refused.

    A pair is refused (left out of the rates, listed with its reason) when none of its points may be
    selected because every finished one did not unlearn, or when ``controls`` gives it a do-nothing
    score at least as good as its best point's: tuning cannot pick a rate that is no better than not
    unlearning at all. A pair whose every run failed is left out, as before, without a refusal.
    """
    best: dict[str, dict[str, float]] = {}
    refused: list[dict[str, Any]] = []
    for method, strategies in grid.items():
        for strategy, points in strategies.items():
            control = (controls or {}).get(method, {}).get(strategy)
            point = best_point(points, objective)
            entry = {"method": method, "strategy": strategy, "control": control}
            if point is None:
                flagged = [p for p in points if p.get("did_not_unlearn")]
                if flagged:
                    refused.append({**entry, "best": None, "reason": (
                        f"every finished {field} did not unlearn (forget-side metrics within seed noise of "
                        f"doing nothing): {', '.join(f'{p[field]:.3g}' for p in flagged)}")})  # fmt: skip
                continue
            if control is not None and not objective.beats(point[objective.score], control):
                refused.append({**entry, "best": point[objective.score], "reason": (
                    f"the do-nothing control scores {objective.score} {objective.show(control)}, at least as good as "
                    f"the best run's {objective.show(point[objective.score])} at {field} {point[field]:.3g}")})  # fmt: skip
                continue
            best.setdefault(method, {})[strategy] = round_rate(point[field])
    return best, refused


def best_rates(grid: Grid, objective: Objective, field: str, controls: Controls | None = None) -> dict[str, dict[str, float]]:
    """Method -> strategy -> the ``field`` rate of the best point (pairs without one, or refused, are left out)."""
    return select(grid, objective, field, controls)[0]


def edge_extension(points: Sequence[dict[str, Any]], objective: Objective) -> float | None:
    """The next factor past the end of the grid where the best score sits, or None when it is inside.

    The step repeats the ratio of the last two factors at that end (x2 after 5 -> 10 gives 20).
    A grid of one factor, or one whose every point failed, is not extended.
    """
    factors = sorted(p["factor"] for p in points)
    edge = _edge(points, objective)
    if edge == "lower":
        return float(f"{factors[0] * factors[0] / factors[1]:.4g}")
    if edge == "upper":
        return float(f"{factors[-1] * factors[-1] / factors[-2]:.4g}")
    return None


def _edge(points: Sequence[dict[str, Any]], objective: Objective) -> str | None:
    """``"lower"`` or ``"upper"`` when the best point sits at that end of a grid of two or more factors."""
    factors = sorted(p["factor"] for p in points)
    best = best_point(points, objective)
    if len(factors) < 2 or best is None:
        return None
    if best["factor"] == factors[0]:
        return "lower"
    if best["factor"] == factors[-1]:
        return "upper"
    return None


def grid_edges(grid: Grid, objective: Objective, field: str, extend: int) -> list[dict[str, Any]]:
    """The pairs whose best point still sits at an end of their grid, each with why it was not extended."""
    reason = (f"extension limit reached ({extend} rounds, --extend)" if extend > 0
              else "grid extension off (--extend 0)")  # fmt: skip
    edges = []
    for method, strategies in grid.items():
        for strategy, points in strategies.items():
            edge = _edge(points, objective)
            if edge is not None:
                rate = best_point(points, objective)[field]
                edges.append({"method": method, "strategy": strategy, "edge": edge, field: rate, "reason": reason})
    return edges


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
    factors = check_factors(factors)
    if extend > 0 and len(factors) < 2:
        raise ValueError(
            f"a grid of one factor ({factors[0]:g}) has no step to extend by: give two or more factors, or extend 0"
        )
    grid: Grid = {}

    def add(factor: float, pairs: dict[str, list[str]] | None) -> None:
        for (method, strategy), point in run_factor(factor, pairs).items():
            line = grid.setdefault(method, {}).setdefault(strategy, [])
            line.append({**point, "factor": factor})
            line.sort(key=lambda p: p["factor"])

    for factor in factors:
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


def _score_cell(point: dict[str, Any], objective: Objective) -> str:
    if point.get(objective.score) is None or point.get("failed"):
        return "failed"
    std = point.get("criterion_std")
    text = objective.show(point[objective.score]) + ("" if std is None else f" ± {objective.show(std)}")
    return text + (" (did not unlearn)" if point.get("did_not_unlearn") else "")


def grid_table(
    grid: Grid,
    objective: Objective,
    field: str,
    best: dict[str, dict[str, float]],
    controls: Controls | None = None,
    edges: Sequence[dict[str, Any]] = (),
    refused: Sequence[dict[str, Any]] = (),
) -> str:
    """A markdown table: one row per (method, strategy), the score (± its std) at each rate, the
    do-nothing control's score, and the chosen rate with its score, or why there is none / an edge."""
    lines = [
        f"| Method | Strategy | {objective.score} at each {field} | do nothing | best {field} |",
        "|---|---|---|---|---|",
    ]
    at_edge = {(e["method"], e["strategy"]): e for e in edges}
    no = {(r["method"], r["strategy"]) for r in refused}
    for method, strategies in grid.items():
        for strategy, points in strategies.items():
            cells = ", ".join(f"{p[field]:.2g}: {_score_cell(p, objective)}" for p in points)
            control = (controls or {}).get(method, {}).get(strategy)
            rate = best.get(method, {}).get(strategy)
            if (method, strategy) in no:
                chosen = "refused (see below)"
            elif rate is None:
                chosen = "–"
            else:
                point = best_point(points, objective)
                chosen = f"{rate:g} ({_score_cell(point, objective)})"
                if (method, strategy) in at_edge:
                    chosen += f", {at_edge[(method, strategy)]['edge']} edge of the grid"
            control_cell = "–" if control is None else objective.show(control)
            lines.append(f"| {method} | {strategy} | {cells} | {control_cell} | {chosen} |")
    notes = selection_notes(edges, refused, field)
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")


def selected_lines(grid: Grid, objective: Objective, field: str, best: dict[str, dict[str, float]]) -> list[str]:
    """One line per selected rate with its score ± the criterion's std there (best.yaml's comments)."""
    lines = []
    for method, rates in best.items():
        for strategy, rate in rates.items():
            point = best_point(grid[method][strategy], objective)
            lines.append(f"{method}/{strategy}: {field} {rate:g}, {objective.score} {_score_cell(point, objective)}")
    return lines


def selection_notes(edges: Sequence[dict[str, Any]], refused: Sequence[dict[str, Any]], field: str) -> list[str]:
    """One line per edge and per refused pair: what the table and best.yaml's comments report."""
    notes = [
        f"{e['method']}/{e['strategy']}: the best {field} {e[field]:.3g} sits at the {e['edge']} edge of the grid "
        f"({e['reason']}); a better rate may lie beyond it"
        for e in edges
    ]
    notes += [f"{r['method']}/{r['strategy']}: no {field} selected: {r['reason']}" for r in refused]
    return notes


def write_best_preset(path: str | Path, fragment: dict[str, Any], header: str) -> None:
    """A preset layer (YAML) of tuned rates, ``header`` as its first comment line(s); written atomically."""
    import yaml

    comment = "".join(f"# {line}\n" for line in header.splitlines())
    write_text_atomic(Path(path), comment + yaml.safe_dump(fragment, sort_keys=False))
