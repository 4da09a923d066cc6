"""Regenerate table.md and the PNG plots of a results folder from its results.json (any task)."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder holding results.json (written by dualoptim bench or dualoptim tofu)")


def _task(results: object, path: str) -> str:
    """The task of a results file; files written before the shared envelope name it ``benchmark``."""
    if isinstance(results, dict) and "rows" in results:
        task = results.get("task") or {"image-classification": "vision"}.get(results.get("benchmark"), results.get("benchmark"))
        required = {"vision": ("retrain", "config"), "tofu": ("split", "tasks"), "diffusion": ("distance", "original"),
                    "safety": ("judge", "seeds")}.get(task)
        missing = [key for key in required or () if key not in results]
        if required is not None and missing:
            raise ValueError(f"{path} is a {task} results file without {', '.join(missing)}: not one dualoptim wrote")
        if required is not None:
            return task
    raise ValueError(f"{path} is not a results file of dualoptim bench or dualoptim tofu (no task and rows)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dualoptim.io import read_json

    path = Path(args.dir) / "results.json"
    results = read_json(path)
    task = _task(results, str(path))
    if task == "vision":
        from dualoptim.vision.report import markdown_table, write_report

        written = write_report(results, args.dir)
        print(markdown_table(results))
    elif task == "diffusion":
        from dualoptim.diffusion.report import markdown_table, write_report

        written = write_report(results, args.dir)
        print(markdown_table(results))
    elif task == "safety":
        from dualoptim.safety.report import render_table, write_report

        written = write_report(results, args.dir)
        print(render_table(results))
    else:
        from dualoptim.llm.report import write_report

        written = write_report(results, args.dir)
        print(Path(written[0]).read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
