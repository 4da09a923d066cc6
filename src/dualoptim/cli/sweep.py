"""Tune learning rates as the papers do, and map how sensitive each strategy is to them.

Image classification (--task vision, the default) runs the benchmark once per factor (every
configured forget lr, or retain lr with --lr-side retain, times the factor; default factors 0.25,
0.5, 1, 2, 4, steps of 2x) into --out/factor-<f>/, extends the grid past an end where the lowest Gap
sits (--extend rounds, default 4; an edge left after them is reported), selects on two or more
seeds, then writes --out/sweep.json, --out/sweep.md (the grid's table), the sensitivity map (Gap and
Std against the rate, sensitivity.png and one sensitivity-<method>.png per method) and
--out/best.yaml, a preset fragment to layer on the base preset: dualoptim bench --preset BASE
--preset OUT/best.yaml. TOFU (--task tofu, the LLM papers' protocol) scales the forget lrs, picks
the highest OVR averaged over --select-tasks (default: every task run) and seeds, draws OVR, UFE
and MU against the rate (sensitivity.png), and its best.yaml layers on a TOFU preset: dualoptim
tofu --preset BASE --preset OUT/best.yaml. Both never select a rate whose runs did not unlearn and
refuse a pair that does not beat the do-nothing control (named in the table and best.yaml).
"""

from __future__ import annotations

import argparse

from dualoptim.cli.bench import add_arguments as add_bench_arguments
from dualoptim.sweep import DEFAULT_EXTEND, DEFAULT_FACTORS

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dualoptim.cli.tofu import add_tofu_arguments

    add_bench_arguments(parser, out="out/sweep")
    parser.add_argument(
        "--factors", nargs="+", default=[",".join(f"{f:g}" for f in DEFAULT_FACTORS)], metavar="F",
        help="multipliers of the learning rates (default: 0.25,0.5,1,2,4, steps of 2x)",
    )  # fmt: skip
    parser.add_argument(
        "--lr-side", choices=("forget", "retain"), default="forget",
        help="which learning rate to scale (default: forget; the retain rate stays fixed, as in the papers)",
    )  # fmt: skip
    parser.add_argument(
        "--extend", type=int, default=None, metavar="N",
        help="when the best score sits at an end of the grid, run the next factor past it, up to N times "
        f"(default {DEFAULT_EXTEND}; 0: never); an edge left is reported",
    )  # fmt: skip
    parser.add_argument(
        "--task", choices=("vision", "tofu"), default="vision",
        help="vision: `dualoptim bench` presets, lowest Gap; tofu: `dualoptim tofu` presets, highest OVR",
    )  # fmt: skip
    add_tofu_arguments(parser)
    parser.add_argument(
        "--select-tasks", "--select-task", dest="select_tasks", default=None, metavar="T",
        help="--task tofu: the forget tasks whose mean OVR (over them and the seeds) selects, e.g. 1,2 "
        "(default: every task run; two runs or more per rate)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from dualoptim.cli.common import command_line, split_names

    try:
        factors = [float(f) for f in split_names(args.factors)]
    except ValueError:
        raise ValueError(f"--factors must be numbers, got {' '.join(args.factors)!r}") from None
    if args.task == "tofu":
        if args.lr_side != "forget":
            raise ValueError("--lr-side retain applies to --task vision only (TOFU tunes the forget lr)")
        return _run_tofu(args, factors)
    given = {"--tasks": args.tasks, "--split": args.split, "--hub": args.hub,
             "--select-tasks": args.select_tasks is not None}  # fmt: skip
    tofu_only = [flag for flag, value in given.items() if value]
    if tofu_only:
        raise ValueError(f"{', '.join(tofu_only)} apply to --task tofu only")
    from pathlib import Path

    from dualoptim.cli.bench import vision_config
    from dualoptim.vision.sweep import run_sweep

    run_sweep(
        vision_config(args), factors, args.out, side=args.lr_side,
        extend=DEFAULT_EXTEND if args.extend is None else args.extend,
        progress_bar=not args.no_progress, command=command_line("sweep", args),
    )  # fmt: skip
    print((Path(args.out) / "sweep.md").read_text(encoding="utf-8"), end="")
    print(f"sensitivity map in {args.out}/sensitivity.png; best learning rates in {args.out}/best.yaml")
    return 0


def _run_tofu(args: argparse.Namespace, factors: list[float]) -> int:
    from pathlib import Path

    from dualoptim.cli.common import command_line, print_config, split_names
    from dualoptim.cli.tofu import tofu_config
    from dualoptim.llm.config import validate
    from dualoptim.llm.sweep import run_sweep

    config = tofu_config(args)
    validate(config)  # bad values fail before the configuration is printed and any work starts
    print_config(config)
    select_tasks = None if args.select_tasks is None else split_names([args.select_tasks])
    run_sweep(
        config, factors, args.out, select_tasks=select_tasks,
        extend=DEFAULT_EXTEND if args.extend is None else args.extend,
        progress=not args.no_progress, command=command_line("sweep", args),
    )  # fmt: skip
    print((Path(args.out) / "sweep.md").read_text(encoding="utf-8"), end="")
    print(f"grid in {args.out}/sweep.json; sensitivity curves in {args.out}/sensitivity.png; "
          f"best learning rates in {args.out}/best.yaml")  # fmt: skip
    return 0
