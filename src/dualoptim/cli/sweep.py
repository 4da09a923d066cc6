"""Tune forget learning rates as the papers do: grid over the forget lr, retain lr fixed, pick the best score.

Runs the benchmark once per factor (every configured forget lr times the factor) into
--out/factor-<f>/, then writes --out/sweep.json and --out/best.yaml, a preset fragment to layer on
the base preset: dualoptim bench --preset BASE --preset OUT/best.yaml. Image classification
(--task vision, the default) picks the lowest Gap; TOFU (--task tofu, the LLM papers' protocol)
picks the highest OVR on --select-task (task 1), writes the grid's table to --out/sweep.md too, and
its best.yaml layers on a TOFU preset: dualoptim tofu --preset BASE --preset OUT/best.yaml.
"""

from __future__ import annotations

import argparse

from dualoptim.cli.bench import add_arguments as add_bench_arguments

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dualoptim.cli.tofu import add_tofu_arguments

    add_bench_arguments(parser, out="out/sweep")
    parser.add_argument(
        "--factors", nargs="+", default=["0.3,1,3"], metavar="F",
        help="multipliers of the forget lrs, e.g. 0.1,0.3,1,3 (default: 0.3,1,3)",
    )  # fmt: skip
    parser.add_argument(
        "--task", choices=("vision", "tofu"), default="vision",
        help="vision: `dualoptim bench` presets, lowest Gap; tofu: `dualoptim tofu` presets, highest OVR",
    )  # fmt: skip
    add_tofu_arguments(parser)
    parser.add_argument(
        "--select-task", default="1", metavar="T", help="--task tofu: the forget task whose OVR selects (default 1)"
    )
    parser.add_argument(
        "--extend", type=int, default=0, metavar="N",
        help="--task tofu: when the best OVR sits at an end of the grid, run the next factor past it, up to N times",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from dualoptim.cli.common import command_line, split_names

    try:
        factors = [float(f) for f in split_names(args.factors)]
    except ValueError:
        raise ValueError(f"--factors must be numbers, got {' '.join(args.factors)!r}") from None
    if args.task == "tofu":
        return _run_tofu(args, factors)
    given = {"--tasks": args.tasks, "--split": args.split, "--hub": args.hub,
             "--select-task": args.select_task != "1", "--extend": args.extend}  # fmt: skip
    tofu_only = [flag for flag, value in given.items() if value]
    if tofu_only:
        raise ValueError(f"{', '.join(tofu_only)} apply to --task tofu only")
    from dualoptim.cli.bench import vision_config
    from dualoptim.sweep import Objective, grid_table
    from dualoptim.vision.sweep import run_sweep

    summary = run_sweep(
        vision_config(args), factors, args.out, progress_bar=not args.no_progress,
        command=command_line("sweep", args),
    )  # fmt: skip
    print(grid_table(summary["grid"], Objective("Gap"), "forget_lr", summary["best_forget_lr"]), end="")
    print(f"best learning rates in {args.out}/best.yaml")
    return 0


def _run_tofu(args: argparse.Namespace, factors: list[float]) -> int:
    from pathlib import Path

    from dualoptim.cli.common import command_line, print_config
    from dualoptim.cli.tofu import tofu_config
    from dualoptim.llm.config import validate
    from dualoptim.llm.sweep import run_sweep

    config = tofu_config(args)
    validate(config)  # bad values fail before the configuration is printed and any work starts
    print_config(config)
    run_sweep(
        config, factors, args.out, select_task=args.select_task, extend=args.extend,
        progress=not args.no_progress, command=command_line("sweep", args),
    )  # fmt: skip
    print((Path(args.out) / "sweep.md").read_text(encoding="utf-8"), end="")
    print(f"grid in {args.out}/sweep.json; best learning rates in {args.out}/best.yaml")
    return 0
