"""TOFU ``results.json`` -> a markdown table shaped like the papers' and a PNG of the run curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dualoptim.io import write_text_atomic
from dualoptim.llm.results import DDOF, DO_NOTHING, FORGET_SIDE, NOISE_FLOOR, is_targeted, with_controls
from dualoptim.metrics.aggregate import STD_NAMES, mean_std
from dualoptim.reports.plots import STRATEGY_COLORS, band, pyplot, save
from dualoptim.reports.tables import mean_std_cell

__all__ = ["SENSITIVITY", "plot_curves", "plot_sensitivity", "render_table", "write_report"]

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
            lines.append("| " + " | ".join([*_label(row, main=False), *cells]) + " |")
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
        lines.append("| " + " | ".join([*_label(row, main=False), *cells]) + " |")
    return lines


def _histories(row: dict[str, Any]) -> list[list[dict[str, Any]]]:
    if "runs" in row:
        return [run["history"] for run in row["runs"] if run.get("history")]
    return [h for h in row.get("history", {}).values() if h]  # before the shared envelope


def _title(results: dict[str, Any]) -> str:
    """``TOFU forget10`` or ``Real people (closer look)``: what the table is about."""
    return "Real people (closer look)" if results.get("dataset") == "real_world" else f"TOFU {results['split']}"


def _label(row: dict[str, Any], main: bool = True) -> tuple[str, str]:
    """Loss and strategy cells: the target is the do-nothing control; in the main table a stopped or
    flagged run says so (the per-set tables repeat the rows without the notes)."""
    if row["loss"] == DO_NOTHING and _strategy(row) == "-":
        return "do nothing (target)", "-"
    if not main:
        return row["loss"], _strategy(row)
    stopped = f" (stopped on {len(row['stopped'])} run(s))" if row.get("stopped") else ""
    flag = " (did not unlearn)" if row.get("did_not_unlearn") else ""
    return row["loss"], f"{_strategy(row)}{stopped}{flag}"


def _control_ovr(results: dict[str, Any], row: dict[str, Any]) -> dict[str, float] | None:
    """The do-nothing OVR a row is compared with: scored targeted for an IDK/DPO row, untargeted otherwise."""
    control = results.get("do_nothing")
    if control is None or _strategy(row) == "-":
        return None
    return control["targeted" if is_targeted(row["loss"]) else "untargeted"]["metrics"]["OVR"]


def _control_lines(results: dict[str, Any]) -> list[str]:
    """The do-nothing control's notes: the flag's rule, and the rows that do not beat doing nothing."""
    control = results.get("do_nothing")
    if control is None:
        return ["", "- The do-nothing row is absent: this results.json has no target evaluation."]
    lines = [
        "",
        "- do nothing (target) = the model before unlearning, evaluated and scored like a run (OVR from UFE); "
        "\"targeted scoring\" is the same model scored as an IDK/DPO run is (OVR from TFE), the control of "
        "those rows. \"did not unlearn\": forget-set " + " and ".join(n.split("/")[1] for n in FORGET_SIDE)
        + f" both within seed noise of the target's, |mean difference| <= max(std of the row, std of the "
        f"target, {NOISE_FLOOR:g}) (docs/design.md §4.3).",
    ]
    losing = []
    for row in results["rows"]:
        ovr, base = row["metrics"].get("OVR"), _control_ovr(results, row)
        if ovr is not None and base is not None and ovr["mean"] <= base["mean"]:
            losing.append(f"{row['loss']}/{_strategy(row)} ({100 * ovr['mean']:.2f} <= {100 * base['mean']:.2f})")
    if losing:
        lines.append("- OVR no higher than doing nothing: " + ", ".join(losing) + ".")
    return lines


def render_table(results: dict[str, Any]) -> str:
    """Rows loss × strategy after the do-nothing control (the target, both scorings) and the retain
    model; mean ± std over tasks; "OVR − do nothing" is the row's OVR minus its control's."""
    results = with_controls(results)
    control = results.get("do_nothing")
    lines = [
        f"# {_title(results)}, tasks {', '.join(results['tasks'])}"
        + (f", seeds {', '.join(str(s) for s in results['seeds'])}" if results.get("seeds") else ""),
        "",
        f"Mean ± {results.get('std', 'population std (ddof 0)')} over the runs of each row (tasks x seeds; "
        "each task a different forget set). Percent, except Forget Quality "
        "(a KS-test p-value). OVR uses TFE for targeted forget losses (IDK, DPO), UFE otherwise. A value "
        "without ± is from a single run, or the same in every run of its row; ± <0.01 is a spread below 0.005.",
        "",
        "| Loss | Strategy | " + " | ".join(COLUMNS) + " | OVR − do nothing | seconds |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|---|",
    ]
    targeted_rows = any(_strategy(r) != "-" and is_targeted(r["loss"]) for r in results["rows"])
    for row in results["rows"]:
        cells = [_cell(row["metrics"].get(name), name != "Forget Quality") for name in COLUMNS]
        ovr, base = row["metrics"].get("OVR"), _control_ovr(results, row)
        delta = "–" if ovr is None or base is None else f"{100 * (ovr['mean'] - base['mean']):+.2f}"
        loss, strategy = _label(row)
        lines.append(f"| {loss} | {strategy} | " + " | ".join(cells) + f" | {delta} | {row['seconds']:.0f} |")
        if loss == "do nothing (target)" and control is not None and targeted_rows:
            scored = control["targeted"]["metrics"]
            cells = [_cell(scored.get(name), True) if name in scored else "–" for name in COLUMNS]
            lines.append("| do nothing (target), targeted scoring | - | " + " | ".join(cells) + " | – | – |")
    lines += _control_lines(results)
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


#: the scores a TOFU sensitivity figure draws against the forget rate, one panel each
SENSITIVITY = ("OVR", "UFE", "MU")


def plot_sensitivity(summary: dict[str, Any], path: str | Path) -> Path:
    """The TOFU sweep's sensitivity curves: OVR, UFE and MU against the forget rate (log axis).

    One panel row per loss, one line per strategy, the band ± the sample std over the selection runs
    (tasks x seeds) at each rate, in percent. A ring marks the rate selected (none for a refused
    pair), a cross a rate whose runs did not unlearn; on the OVR panel the dashed black line is the
    do-nothing control's OVR (the target scored as that loss's runs are), which a selected rate must beat.
    """
    plt = pyplot()
    from matplotlib.ticker import NullFormatter

    grid = summary["grid"]
    losses = list(grid) or ["-"]
    chosen = summary.get("best_forget_lr", {})
    fig, axes = plt.subplots(len(losses), len(SENSITIVITY), figsize=(4.0 * len(SENSITIVITY), 3.0 * len(losses)),
                             squeeze=False)  # fmt: skip
    for i, loss in enumerate(losses):
        for strategy, points in grid.get(loss, {}).items():
            done = [p for p in points if p.get("OVR") is not None]
            if not done:
                continue
            color = STRATEGY_COLORS.get(strategy)
            x = [p["forget_lr"] for p in done]
            for j, name in enumerate(SENSITIVITY):
                values = [None if p.get(name) is None else 100 * p[name] for p in done]
                spread = [None if p.get(f"{name} std") is None else 100 * p[f"{name} std"] for p in done]
                band(axes[i][j], x, values, spread, label=strategy, color=color)
            flagged = [p for p in done if p.get("did_not_unlearn")]
            if flagged:
                axes[i][0].plot([p["forget_lr"] for p in flagged], [100 * p["OVR"] for p in flagged], "x",
                                color=color, ms=7)  # fmt: skip
            rate = chosen.get(loss, {}).get(strategy)
            if rate is not None:
                best = min(done, key=lambda p: abs(p["forget_lr"] - rate))
                axes[i][0].plot([best["forget_lr"]], [100 * best["OVR"]], "o", mfc="none", mec=color, ms=9)
        control = (summary.get("do_nothing") or {}).get(loss)
        if control is not None:
            axes[i][0].axhline(100 * control, color="black", ls="--", lw=1, label="do nothing")
        for j, name in enumerate(SENSITIVITY):
            ax = axes[i][j]
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap
            ax.set_title(f"{loss}: {name}", fontsize=9)
            ax.set_xlabel("forget learning rate", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[i][0].legend(fontsize=7)
    selection = summary.get("selection", {})
    fig.suptitle(f"TOFU {summary.get('split', '')}: sensitivity to the forget rate, mean ± sample std over tasks "
                 f"{', '.join(selection.get('tasks', []))} x seeds {', '.join(str(s) for s in selection.get('seeds', []))} "
                 "(percent, higher is better)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return save(fig, path)


def write_report(results: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``table.md`` and ``tofu_curves.png`` into ``out``."""
    out = Path(out)
    return [write_text_atomic(out / "table.md", render_table(results)), plot_curves(results, out / "tofu_curves.png")]
