"""Tune learning rates as the papers do, and map how sensitive each strategy is to them.

Image classification (--task vision, the default) runs the benchmark once per factor (every
configured forget lr, or retain lr with --lr-side retain, times the factor) into
--out/factor-<f>/, extends the grid past an end where the lowest Gap sits (--extend rounds, default
2), then writes --out/sweep.json, the sensitivity map (Gap and Std against the rate,
sensitivity.png and one sensitivity-<method>.png per method) and --out/best.yaml, a preset fragment
to layer on the base preset: dualoptim bench --preset BASE --preset OUT/best.yaml. TOFU (--task
tofu, the LLM papers' protocol) scales the forget lrs, picks the highest OVR on --select-task
(task 1), writes the grid's table to --out/sweep.md too, and its best.yaml layers on a TOFU preset:
dualoptim tofu --preset BASE --preset OUT/best.yaml.
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
        help="multipliers of the learning rates, e.g. 0.1,0.2,0.5,1,2,5,10 (default: 0.3,1,3)",
    )  # fmt: skip
    parser.add_argument(
        "--lr-side", choices=("forget", "retain"), default="forget",
        help="which learning rate to scale (default: forget; the retain rate stays fixed, as in the papers)",
    )  # fmt: skip
    parser.add_argument(
        "--extend", type=int, default=None, metavar="N",
        help="when the best score sits at an end of the grid, run the next factor past it, up to N times "
        "(default 2 for vision, 0 for tofu; 0: never)",
    )  # fmt: skip
    parser.add_argument(
        "--task", choices=("vision", "tofu"), default="vision",
        help="vision: `dualoptim bench` presets, lowest Gap; tofu: `dualoptim tofu` presets, highest OVR",
    )  # fmt: skip
    add_tofu_arguments(parser)
    parser.add_argument(
        "--select-task", default="1", metavar="T", help="--task tofu: the forget task whose OVR selects (default 1)"
    )


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
             "--select-task": args.select_task != "1"}  # fmt: skip
    tofu_only = [flag for flag, value in given.items() if value]
    if tofu_only:
        raise ValueError(f"{', '.join(tofu_only)} apply to --task tofu only")
    from dualoptim.cli.bench import vision_config
    from dualoptim.vision.sweep import run_sweep

    summary = run_sweep(
        vision_config(args), factors, args.out, side=args.lr_side, extend=2 if args.extend is None else args.extend,
        progress_bar=not args.no_progress, command=command_line("sweep", args),
    )  # fmt: skip
    field = f"{args.lr_side}_lr"
    print(f"| Method | Strategy | {args.lr_side} lr: Gap / Std at each rate | best {args.lr_side} lr |")
    print("|---|---|---|---|")
    for method, strategies in summary["grid"].items():
        for strategy, points in strategies.items():
            cells = ", ".join(
                f"{p[field]:.2g}: failed" if p["Gap"] is None else f"{p[field]:.2g}: {p['Gap']:.2f} / {p['Std']:.2f}"
                for p in points
            )
            best = summary[f"best_{field}"].get(method, {}).get(strategy, "–")
            print(f"| {method} | {strategy} | {cells} | {best} |")
    print(f"sensitivity map in {args.out}/sensitivity.png; best learning rates in {args.out}/best.yaml")
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
        config, factors, args.out, select_task=args.select_task, extend=args.extend or 0,
        progress=not args.no_progress, command=command_line("sweep", args),
    )  # fmt: skip
    print((Path(args.out) / "sweep.md").read_text(encoding="utf-8"), end="")
    print(f"grid in {args.out}/sweep.json; best learning rates in {args.out}/best.yaml")
    return 0
