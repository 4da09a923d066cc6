"""Image-classification figures: metrics along the run (stability), gradient norms, the sensitivity map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualoptim.metrics.aggregate import METRICS
from dualoptim.reports.plots import STRATEGY_COLORS, band, pyplot, save
from dualoptim.vision.results import strategy_of

__all__ = ["plot_grad_norms", "plot_sensitivity", "plot_stability"]


def _header(fig, axes, title: str) -> None:
    """Title and legend in a strip of fixed height above the panels."""
    height = fig.get_size_inches()[1]
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.suptitle(title, y=1 - 0.08 / height, va="top", fontsize=10)
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.32 / height),
        ncol=len(labels),
        fontsize=9,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.62 / height))


def _methods(results: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(row["method"] for row in results["rows"] if row.get("curves")))


def plot_stability(results: dict[str, Any], path: str | Path, methods: list[str] | None = None) -> Path:
    """FA/RA/TA/MIA along the run, mean ± std band over seeds, one line per strategy (the papers' figure).

    The dashed line is the retrained reference measured on the same evaluation subsets.
    """
    plt = pyplot()
    methods = methods or _methods(results)
    reference = results["retrain"].get("curve_reference", {})
    fig, axes = plt.subplots(
        len(methods), len(METRICS), figsize=(3.2 * len(METRICS), 2.3 * len(methods) + 0.7), squeeze=False
    )
    for i, method in enumerate(methods):
        for row in results["rows"]:
            if row["method"] != method or not row.get("curves"):
                continue
            strategy = strategy_of(row)
            for j, metric in enumerate(METRICS):
                curve = row["curves"][metric]
                band(axes[i][j], row["curves"]["progress"], curve["mean"], curve["std"],
                     label=strategy, color=STRATEGY_COLORS.get(strategy))  # fmt: skip
        for j, metric in enumerate(METRICS):
            ax = axes[i][j]
            if metric in reference:
                ax.axhline(reference[metric], color="black", ls="--", lw=1, label="retrain")
            ax.set_title(f"{method}: {metric}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if i == len(methods) - 1:
                ax.set_xlabel("fraction of the unlearning run", fontsize=8)
    _header(fig, axes, f"{results.get('dataset', '')}: metrics (%) along unlearning, mean ± std over seeds")
    return save(fig, path)


def plot_grad_norms(results: dict[str, Any], path: str | Path, methods: list[str] | None = None) -> Path:
    """Forget vs retain gradient norms over the run, mean ± std band over seeds, one panel per (method, strategy)."""
    plt = pyplot()
    methods = methods or _methods(results)
    strategies = list(dict.fromkeys(strategy_of(row) for row in results["rows"]))
    fig, axes = plt.subplots(
        len(methods),
        len(strategies),
        figsize=(3.2 * len(strategies), 2.3 * len(methods) + 0.7),
        squeeze=False,
    )
    for row in results["rows"]:
        if row["method"] not in methods or not row.get("grad_norms"):
            continue
        ax = axes[methods.index(row["method"])][strategies.index(strategy_of(row))]
        for side, color in (("forget", "tab:red"), ("retain", "tab:blue")):
            series = row["grad_norms"].get(side)
            if not series:
                continue
            band(ax, series["progress"], series["mean"], series["std"], label=side, color=color, floor=1e-8)
        ax.set_yscale("log")
        ax.set_title(f"{row['method']} / {strategy_of(row)}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("fraction of the unlearning run", fontsize=8)
    _header(
        fig, axes, "gradient norm of each objective (after masking, before clipping), mean ± std over seeds"
    )
    return save(fig, path)


def plot_sensitivity(summary: dict[str, Any], path: str | Path, methods: list[str] | None = None) -> Path:
    """The sensitivity map of a sweep.json: Gap and Std against the swept learning rate (log scale).

    One row per method, one line per strategy. The Gap line is the papers' Gap; its band is ± the
    std over seeds of each seed's own Gap. The Std panel is the papers' Std (itself a spread over
    seeds, so it has no band). A ring marks the rate the sweep selected (none for a refused pair),
    a cross a rate whose runs did not unlearn, and the dashed black line the do-nothing control's
    Gap, which a selected rate must beat. Both axes are logarithmic.
    """
    plt = pyplot()
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    side = summary.get("side", "forget")
    grid = summary["grid"]
    chosen = summary.get(f"best_{side}_lr", {})
    control = (summary.get("do_nothing") or {}).get("Gap")
    methods = methods or list(grid)
    fig, axes = plt.subplots(len(methods), 2, figsize=(8.0, 2.5 * len(methods) + 0.7), squeeze=False)
    for i, method in enumerate(methods):
        for strategy, points in grid.get(method, {}).items():
            done = [p for p in points if p["Gap"] is not None]
            if not done:
                continue
            x = [p[f"{side}_lr"] for p in done]
            color = STRATEGY_COLORS.get(strategy)
            spread = [p.get("seed_gap_std") for p in done]
            band(axes[i][0], x, [p["Gap"] for p in done], spread, label=strategy, color=color, floor=0.05)
            axes[i][1].plot(x, [p["Std"] for p in done], color=color, marker="o", ms=3, lw=1.5, label=strategy)
            flagged = [p for p in done if p.get("did_not_unlearn")]
            if flagged:
                axes[i][0].plot([p[f"{side}_lr"] for p in flagged], [p["Gap"] for p in flagged], "x", color=color, ms=7)
            rate = chosen.get(method, {}).get(strategy)
            best = min(done, key=lambda p: abs(p[f"{side}_lr"] - rate)) if rate is not None else None
            if best is not None:
                axes[i][0].plot([best[f"{side}_lr"]], [best["Gap"]], "o", mfc="none", mec=color, ms=9)
        if control is not None:
            axes[i][0].axhline(control, color="black", ls="--", lw=1, label="do nothing")
        for j, score in enumerate(("Gap", "Std")):
            ax = axes[i][j]
            # Log axes: a diverging rate's Gap of 60 and the best rates' 1-3 both stay readable.
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{method}: {score}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if i == len(methods) - 1:
                ax.set_xlabel(f"{side} learning rate", fontsize=8)
    seeds = summary.get("seeds", [])
    _header(fig, axes, f"sensitivity to the {side} learning rate ({len(seeds)} seeds; lower is better)")
    return save(fig, path)
