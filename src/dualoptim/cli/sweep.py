"""Tune learning rates as the papers do, and map how sensitive each strategy is to them.

Runs the benchmark once per factor (every configured forget lr, or retain lr with --lr-side
retain, times the factor) into --out/factor-<f>/, extends the grid past an end where the lowest
Gap sits (--extend rounds), then writes --out/sweep.json, the sensitivity map (Gap and Std against
the rate, sensitivity.png and one sensitivity-<method>.png per method) and --out/best.yaml, a
preset fragment to layer on the base preset: dualoptim bench --preset BASE --preset OUT/best.yaml.
"""

from __future__ import annotations

import argparse

from dualoptim.cli.bench import add_arguments as add_bench_arguments

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        "--extend", type=int, default=2, metavar="N",
        help="when the lowest Gap sits at an end of the grid, run the next factor past it, up to N times (default 2; 0: never)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from dualoptim.cli.bench import vision_config
    from dualoptim.cli.common import command_line, split_names
    from dualoptim.vision.sweep import run_sweep

    try:
        factors = [float(f) for f in split_names(args.factors)]
    except ValueError:
        raise ValueError(f"--factors must be numbers, got {' '.join(args.factors)!r}") from None
    summary = run_sweep(
        vision_config(args), factors, args.out, side=args.lr_side, extend=args.extend,
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
