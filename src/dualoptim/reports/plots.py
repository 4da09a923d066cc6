"""PNG plots without a display, and the mean ± std band every stability figure draws."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["STRATEGY_COLORS", "band", "pyplot", "save"]

#: one colour per strategy in every figure of every task
STRATEGY_COLORS = {
    "joint": "tab:gray",
    "alternate": "tab:orange",
    "dual": "tab:blue",
    "dual+": "tab:green",
    "dual-8bit": "tab:cyan",
    "dual+-8bit": "tab:olive",
}


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def band(
    ax: Any,
    x: Sequence[float],
    mean: Sequence[float | None],
    std: Sequence[float | None],
    *,
    label: str,
    color: str | None = None,
    floor: float | None = None,
) -> None:
    """A line at ``mean`` with a shaded ± ``std`` band (missing values are gaps, not zeros)."""
    nan = float("nan")
    mean = [nan if m is None else m for m in mean]
    std = [0.0 if s is None else s for s in std]
    low = [m - s for m, s in zip(mean, std)]
    if floor is not None:
        low = [max(v, floor) for v in low]
    ax.plot(x, mean, color=color, label=label, lw=1.5)
    ax.fill_between(x, low, [m + s for m, s in zip(mean, std)], color=color, alpha=0.2)


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (folders made as needed) and close it."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
