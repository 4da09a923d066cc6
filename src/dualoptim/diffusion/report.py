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

__all__ = ["markdown_table", "write_grids", "write_report"]


def _cell(stats: dict[str, float] | None) -> str:
    return "–" if stats is None else mean_std_cell(stats["mean"], stats["std"])


def markdown_table(results: dict[str, Any]) -> str:
    """FA and the distance per method x strategy (mean ± sample std over forgotten classes), then per class."""
    distance = results["distance"]
    rows = results["rows"]
    header = ["Method", "Strategy", "FA (%) ↓", f"{distance} ↓", "Kept-class acc. (%) ↑", "Time (s)"]
    lines = table_lines(header, [[r["method"], r["strategy"] or "–", _cell(r["FA"]), _cell(r["FD"]), _cell(r["kept_accuracy"]),
                                  f"{r['seconds']:.0f}" if r.get("seconds") is not None else "–"] for r in rows])  # fmt: skip
    classes = list(rows[0]["per_class"])
    per_class = [[r["method"], r["strategy"] or "–"] + [
        f"{r['per_class'][c]['FA']:.1f} / {r['per_class'][c]['FD']:.2f}" if c in r["per_class"] else "–" for c in classes
    ] for r in rows]  # fmt: skip
    original = results["original"]
    accuracy = ", ".join(f"{name} {acc:.0f}" for name, acc in original["sample_accuracy"].items())
    text = [
        f"# Class-wise unlearning of a diffusion model ({results['config']['data']['dataset']})", "",
        f"Mean ± sample std over forgotten classes ({', '.join(classes)}). FA: % of images generated for the "
        f"forgotten class that the project's classifier labels as that class. {distance}: of the kept classes' "
        "generated images against their real images. Time: unlearning (masks and Fisher included, sampling excluded).",
        "", *lines, "", f"## Per forgotten class: FA / {distance}", "",
        *table_lines(["Method", "Strategy", *classes], per_class), "",
        "## The original model", "",
        f"Classifier accuracy (%) on its samples of every class: {accuracy}.",
        f"Pre-training: {original['pretrain_seconds'] or 0:.0f} s; classifier training: {original['classifier_seconds'] or 0:.0f} s.",
    ]  # fmt: skip
    if results.get("failures"):
        text += ["", "## Failed runs", ""] + [f"- {f['method']}/{f['strategy']} class {f['class_name']}: {f['failed']}"
                                             for f in results["failures"]]  # fmt: skip
    return "\n".join(text) + "\n"


def _figure(results: dict[str, Any], out: Path) -> Path:
    """FA and the distance per method, one bar per strategy (± std over classes), the original as a line."""
    plt = pyplot()
    rows = [r for r in results["rows"] if r["strategy"]]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    original = results["rows"][0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / max(len(strategies), 1)
    for ax, metric, label in ((axes[0], "FA", "FA (%) ↓"), (axes[1], "FD", f"{results['distance']} ↓")):
        for i, strategy in enumerate(strategies):
            mine = {r["method"]: r[metric] for r in rows if r["strategy"] == strategy}
            xs = [m + i * width - 0.4 + width / 2 for m in range(len(methods))]
            means = [mine[m]["mean"] if m in mine else 0 for m in methods]
            stds = [(mine[m]["std"] or 0) if m in mine else 0 for m in methods]
            ax.bar(xs, means, width, yerr=stds, label=strategy, color=STRATEGY_COLORS.get(strategy), capsize=2)
        ax.axhline(original[metric]["mean"], color="black", ls="--", lw=1, label="original")
        ax.set_xticks(range(len(methods)), methods)
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
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
        fig.suptitle(f"{record['method']} / {record['strategy']}: forget {record['class_name']} (top row)", fontsize=9)
        fig.tight_layout()
        name = f"grid_{path.parent.name}_{path.stem}.png"
        written.append(save(fig, out / "grids" / name))
    return written


def write_report(results: dict[str, Any], out: str | Path) -> list[Path]:
    """table.md, fa_fd.png and the grids (from ``out/runs`` when the records are there)."""
    out = Path(out)
    written = [write_text_atomic(out / "table.md", markdown_table(results))]
    if len(results["rows"]) > 1:
        written.append(_figure(results, out))
    if (out / "runs").is_dir():
        written += write_grids(out / "runs", out)
    return written
