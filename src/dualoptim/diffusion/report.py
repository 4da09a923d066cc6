"""results.json (and the run records) -> table.md, a FA/FD figure and one sample grid PNG per run."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from dualoptim.io import read_json, write_text_atomic
from dualoptim.reports.plots import STRATEGY_COLORS, pyplot, save
from dualoptim.reports.tables import markdown_table as table_lines
from dualoptim.reports.tables import mean_std_cell

__all__ = ["class_table", "markdown_table", "write_grids", "write_report"]


def _cell(stats: dict[str, Any] | None, digits: int = 1) -> str:
    return "–" if stats is None else mean_std_cell(stats["mean"], stats["std"], digits=digits)


def _row_label(row: dict[str, Any]) -> list[str]:
    if row.get("control"):
        return ["Do nothing (original)", "–"]
    return [row["method"], row["strategy"] or "–"]


def class_table(results: dict[str, Any], name: str) -> list[str]:
    """The table of one forgotten class: every row's FA, distance, kept-class accuracy and time, mean ± std
    over seeds, the do-nothing row first, and the "did not unlearn" flag."""
    distance = results["distance"]
    header = ["Method", "Strategy", "FA (%) ↓", f"{distance} ↓", "Kept-class acc. (%) ↑", "Time (s)", "Seeds", "Unlearned?"]
    lines = []
    for row in results["rows"]:
        entry = row["per_class"].get(name)
        if entry is None:
            continue
        if row.get("control"):
            verdict = f"control (FA noise {entry['FA_noise']:.1f})"
        else:
            verdict = "**did not unlearn**" if entry["did_not_unlearn"] else "yes"
        seconds = entry.get("seconds")
        lines.append([*_row_label(row), _cell(entry["FA"]), _cell(entry["FD"], 2), _cell(entry["kept_accuracy"]),
                      f"{seconds['mean']:.0f}" if seconds else "–", str(len(entry["seeds"])), verdict])  # fmt: skip
    return table_lines(header, lines)


def markdown_table(results: dict[str, Any]) -> str:
    """One table per forgotten class (mean ± sample std over seeds, the do-nothing row first), then the original
    model's per-class sample accuracy."""
    distance = results["distance"]
    rows = results["rows"]
    original = results["original"]
    seeds = results.get("seeds", [])
    forgotten = list(rows[0]["per_class"])
    accuracy = original["sample_accuracy"]
    text = [
        f"# Class-wise unlearning of a diffusion model ({results['config']['data']['dataset']})", "",
        f"One table per forgotten class; every cell is the mean ± sample std over seeds {seeds} (each seed: its own "
        "unlearning randomness and its own bank of starting noises, shared by the do-nothing row). FA: % of images "
        f"generated for the forgotten class that the project's classifier labels as that class. {distance}: of the "
        "kept classes' generated images against their real images. Time: unlearning (masks and Fisher included, "
        f"sampling excluded). Unlearned?: {results.get('did_not_unlearn_rule', '')}.", "",
    ]  # fmt: skip
    for name in forgotten:
        recognised = accuracy.get(name)
        text += [f"## Forgotten class: {name}" + (f" (the original's samples recognised {_cell(recognised)}%)" if recognised else ""),
                 "", *class_table(results, name), ""]  # fmt: skip
    cells = [[name, _cell(stats), "yes" if stats["mean"] >= original["recognised_threshold"] else "no"]
             for name, stats in accuracy.items()]  # fmt: skip
    text += [
        "## The original model", "",
        f"Classifier accuracy (%) on its samples of every class, mean ± std over seeds (recognised: >= "
        f"{original['recognised_threshold']:g}%): {len(original['recognised_classes'])} of {len(accuracy)} classes "
        f"recognised, mean {original['sample_accuracy_mean']:.1f}.", "",
        *table_lines(["Class", "Sample accuracy (%)", "Recognised"], cells), "",
        f"Pre-training: {original.get('pretrain_steps') or '–'} steps, {original['pretrain_seconds'] or 0:.0f} s; "
        f"classifier training: {original['classifier_seconds'] or 0:.0f} s.",
    ]  # fmt: skip
    if results.get("failures"):
        text += ["", "## Failed runs", ""] + [f"- {f['method']}/{f['strategy']} class {f['class_name']} seed {f['seed']}: "
                                             f"{f['failed']}" for f in results["failures"]]  # fmt: skip
    return "\n".join(text) + "\n"


def _figure(results: dict[str, Any], out: Path) -> Path:
    """Per forgotten class (columns): FA (top) and the distance (bottom) per method, one bar per strategy
    (± std over seeds), the do-nothing row as a dashed line; a hatched bar did not unlearn."""
    plt = pyplot()
    control = results["rows"][0]
    rows = [r for r in results["rows"] if not r.get("control")]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    forgotten = list(control["per_class"])
    fig, axes = plt.subplots(2, len(forgotten), figsize=(4.2 * len(forgotten), 6), squeeze=False)
    width = 0.8 / max(len(strategies), 1)
    for column, name in enumerate(forgotten):
        for line, (metric, label) in enumerate((("FA", "FA (%) ↓"), ("FD", f"{results['distance']} ↓"))):
            ax = axes[line][column]
            for i, strategy in enumerate(strategies):
                mine = {r["method"]: r["per_class"][name] for r in rows if r["strategy"] == strategy and name in r["per_class"]}
                for m, method in enumerate(methods):
                    if method not in mine:
                        continue
                    stats = mine[method][metric]
                    ax.bar(m + i * width - 0.4 + width / 2, stats["mean"], width, yerr=stats["std"] or 0, capsize=2,
                           color=STRATEGY_COLORS.get(strategy), label=strategy if m == 0 else None,
                           hatch="//" if metric == "FA" and mine[method]["did_not_unlearn"] else None)  # fmt: skip
            ax.axhline(control["per_class"][name][metric]["mean"], color="black", ls="--", lw=1, label="do nothing")
            ax.set_xticks(range(len(methods)), methods)
            ax.set_ylabel(label)
            if line == 0:
                ax.set_title(f"forget {name}", fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out / "fa_fd.png")


def write_grids(runs: Path, out: Path) -> list[Path]:
    """One PNG per run record under ``runs/class*/``: rows are classes, left before and right after unlearning."""
    plt = pyplot()
    written = []
    for path in sorted(runs.glob("class*/*.json")):
        record = read_json(path)
        if "grid" not in record:
            continue
        grid = record["grid"]
        rows, columns = grid["shape"][0], grid["shape"][1]
        fig, axes = plt.subplots(1, 2, figsize=(2 * 0.55 * columns + 1.2, 0.55 * rows + 0.8))
        for ax, side in zip(axes, ("before", "after")):
            raw = np.frombuffer(base64.b64decode(grid[side]), dtype=np.uint8)
            pixels = raw.reshape(grid["shape"])  # [classes, images, C, H, W]
            rows = [np.concatenate(list(row.transpose(0, 2, 3, 1)), axis=1) for row in pixels]
            image = np.concatenate(rows, axis=0)
            ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{side}", fontsize=9)
            ax.set_yticks([(i + 0.5) * pixels.shape[-1] for i in range(len(grid["classes"]))], grid["classes"], fontsize=7)
            ax.set_xticks([])
        fig.suptitle(f"{record['method']} / {record['strategy']} seed {record['seed']}: forget {record['class_name']} (top row)",
                     fontsize=9)  # fmt: skip
        fig.tight_layout()
        name = f"grid_{path.parent.name}_{path.stem}.png"
        written.append(save(fig, out / "grids" / name))
    return written


def write_report(results: dict[str, Any], out: str | Path) -> list[Path]:
    """table.md, fa_fd.png and the grids (from ``out/runs`` when the records are there)."""
    out = Path(out)
    written = [write_text_atomic(out / "table.md", markdown_table(results))]
    if len(results["rows"]) > 1:  # the figure needs a run beside the control
        written.append(_figure(results, out))
    if (out / "runs").is_dir():
        written += write_grids(out / "runs", out)
    return written
