"""TOFU ``results.json`` -> a markdown table shaped like the papers' and a PNG of the run curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dualoptim.io import write_text_atomic
from dualoptim.llm.results import DDOF
from dualoptim.metrics.aggregate import STD_NAMES, mean_std
from dualoptim.reports.plots import STRATEGY_COLORS, band, pyplot, save
from dualoptim.reports.tables import mean_std_cell

__all__ = ["plot_curves", "render_table", "write_report"]

COLUMNS = ("UFE", "TFE", "MU", "OVR", "Forget Quality", "Model Utility")
SETS = {"forget": "forget set", "retain": "retain set", "neighbor": "neighbour set", "real_authors": "real authors",
        "world_facts": "world facts"}  # fmt: skip
PER_SET = (
    "ROUGE",
    "ROUGE-1",
    "Probability",
    "Truth Ratio",
    "Truth Ratio (closer look)",
    "Token Entropy",
    "Cosine Similarity",
    "Entailment",
    "IDK Entailment",
    "IDK Refusal",
    "IDK ROUGE",
)


def _strategy(row: dict[str, Any]) -> str:
    """A row's strategy; files written before the shared vocabulary call it ``optimizer``."""
    return row["strategy"] if "strategy" in row else row["optimizer"]


def _cell(metric: dict[str, float] | None, percent: bool, scale: float | None = None) -> str:
    """``mean ± std``; the mean alone for one run, or when every run of the row gave the same value
    (the target's retain-side values on every task: one model, one retain set); ``± <0.01`` for a
    spread too small to print. Never ``± 0.00``, which reads as a measured zero spread."""
    if metric is None:
        return "absent"
    std = None if not metric["std"] else metric["std"]
    if scale is not None:  # values already in their unit (downstream percentages)
        return mean_std_cell(metric["mean"], std, scale=scale)
    if percent:
        if std is not None and round(100 * std, 2) == 0:
            return f"{mean_std_cell(metric['mean'], None, scale=100)} ± <0.01"
        return mean_std_cell(metric["mean"], std, scale=100)
    text = f"{metric['mean']:.2e}"
    return text if std is None else f"{text} ± {std:.1e}"


def _per_set_tables(rows: list[dict[str, Any]]) -> list[str]:
    """One table per evaluated set; the columns some row has a value for (absent ones are listed below)."""
    lines: list[str] = []
    for set_name, title in SETS.items():
        names = [n for n in PER_SET if any(r["metrics"].get(f"{set_name}/{n}") is not None for r in rows)]
        if not names:
            continue
        lines += ["", f"Per-set values, {title} (percent):", "", "| Loss | Strategy | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]  # fmt: skip
        for row in rows:
            cells = [_cell(row["metrics"].get(f"{set_name}/{n}"), True) for n in names]
            lines.append(f"| {row['loss']} | {_strategy(row)} | " + " | ".join(cells) + " |")
    return lines


def _downstream_table(rows: list[dict[str, Any]]) -> list[str]:
    """Downstream utility per lm-eval task (percent), when the run asked for it (``data.downstream``)."""
    names = list(dict.fromkeys(n for r in rows for n in r["metrics"] if n.startswith("downstream/")))
    if not names:
        return []
    tasks = [n.removeprefix("downstream/") for n in names]
    lines = ["", "Downstream utility (lm-eval, percent):", "", "| Loss | Strategy | " + " | ".join(tasks) + " | AVG |",
             "|---|---|" + "---|" * (len(tasks) + 1)]  # fmt: skip
    for row in rows:
        cells = [_cell(row["metrics"].get(n), False, scale=1) for n in [*names, "Downstream AVG"]]
        lines.append(f"| {row['loss']} | {_strategy(row)} | " + " | ".join(cells) + " |")
    return lines


def _histories(row: dict[str, Any]) -> list[list[dict[str, Any]]]:
    if "runs" in row:
        return [run["history"] for run in row["runs"] if run.get("history")]
    return [h for h in row.get("history", {}).values() if h]  # before the shared envelope


def _title(results: dict[str, Any]) -> str:
    """``TOFU forget10`` or ``Real people (closer look)``: what the table is about."""
    return "Real people (closer look)" if results.get("dataset") == "real_world" else f"TOFU {results['split']}"


def render_table(results: dict[str, Any]) -> str:
    """Rows loss × strategy (after the target and retain-model references); mean ± std over tasks."""
    lines = [
        f"# {_title(results)}, tasks {', '.join(results['tasks'])}"
        + (f", seeds {', '.join(str(s) for s in results['seeds'])}" if results.get("seeds") else ""),
        "",
        f"Mean ± {results.get('std', 'population std (ddof 0)')} over the runs of each row (tasks x seeds; "
        "each task a different forget set). Percent, except Forget Quality "
        "(a KS-test p-value). OVR uses TFE for targeted forget losses (IDK, DPO), UFE otherwise. A value "
        "without ± is from a single run, or the same in every run of its row; ± <0.01 is a spread below 0.005.",
        "",
        "| Loss | Strategy | " + " | ".join(COLUMNS) + " | seconds |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for row in results["rows"]:
        cells = [_cell(row["metrics"].get(name), name != "Forget Quality") for name in COLUMNS]
        stopped = f" (stopped on {len(row['stopped'])} run(s))" if row.get("stopped") else ""
        lines.append(
            f"| {row['loss']} | {_strategy(row)}{stopped} | "
            + " | ".join(cells)
            + f" | {row['seconds']:.0f} |"
        )
    lines += _per_set_tables(results["rows"])
    lines += _downstream_table(results["rows"])
    absent = {}
    for row in results["rows"]:
        absent.update(row.get("absent", {}))
    if absent:
        lines += ["", "Absent metrics:", ""]
        lines += [f"- {name}: {reason}" for name, reason in sorted(absent.items())]
    used = next((row["aggregates"] for row in results["rows"] if row.get("aggregates")), None)
    if used:
        lines += ["", "Components each aggregate used:", ""]
        for name, aggregate in used.items():
            lines.append(f"- {name}: {', '.join(aggregate['used']) or 'none'}")
            by_reason: dict[str, list[str]] = {}
            for component, reason in aggregate["absent"].items():
                by_reason.setdefault(reason, []).append(component)
            lines += [f"  - absent ({reason}): {', '.join(parts)}" for reason, parts in by_reason.items()]
    lines += ["", *[f"- {note}" for note in results.get("notes", [])], ""]
    return "\n".join(lines)


def _number(value: float | None) -> float:
    return np.nan if value is None else value


def plot_curves(results: dict[str, Any], path: Path) -> Path:
    """Forget and retain Probability along the run: one panel row per loss, one line per strategy."""
    plt = pyplot()
    rows = [r for r in results["rows"] if _strategy(r) != "-"]
    losses = list(dict.fromkeys(r["loss"] for r in rows)) or ["-"]
    retain_side = "neighbor" if results.get("dataset") == "real_world" else "retain"
    fig, axes = plt.subplots(len(losses), 2, figsize=(10, 3.4 * len(losses)), squeeze=False)
    for i, loss in enumerate(losses):
        for j, side in enumerate(("forget", retain_side)):
            ax = axes[i][j]
            for row in (r for r in rows if r["loss"] == loss):
                curves = _histories(row)
                if not curves:
                    continue
                steps = [point["step"] for point in curves[0]]
                length = min(len(c) for c in curves)
                values = np.array(
                    [[_number(p.get(f"{side}/Probability")) for p in c[:length]] for c in curves], dtype=float
                )
                stats = [mean_std([v for v in column if np.isfinite(v)] or [np.nan], DDOF) for column in values.T]
                mean = np.array([m for m, _ in stats])
                std = np.array([np.nan if sd is None else sd for _, sd in stats])
                band(ax, steps[:length], list(mean), list(std), label=_strategy(row),
                     color=STRATEGY_COLORS.get(_strategy(row)))  # fmt: skip
            ax.set_title(f"{loss}: {side} Probability")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("P(answer)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"{_title(results)}: mean ± {STD_NAMES[DDOF]} over the runs, tasks {', '.join(results['tasks'])}")
    fig.tight_layout()
    return save(fig, path)


def write_report(results: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``table.md`` and ``tofu_curves.png`` into ``out``."""
    out = Path(out)
    return [write_text_atomic(out / "table.md", render_table(results)), plot_curves(results, out / "tofu_curves.png")]
