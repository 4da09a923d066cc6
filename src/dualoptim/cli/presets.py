"""List the shipped presets of each task (or of one), with the first line of each file's comment."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help="vision or tofu (default: every task)")


def _summary(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def run(args: argparse.Namespace) -> int:
    from dualoptim.config import PRESET_ROOT, preset_names, preset_path

    tasks = [args.task] if args.task else sorted(p.name for p in PRESET_ROOT.iterdir() if p.is_dir())
    for task in tasks:
        names = preset_names(task)
        print(f"{task}:")
        width = max((len(n) for n in names), default=0)
        for name in names:
            print(f"  {name:<{width}}  {_summary(preset_path(task, name).read_text(encoding='utf-8'))}")
    return 0
