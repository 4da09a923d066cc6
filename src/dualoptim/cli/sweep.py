"""Tune forget learning rates as the papers do: grid over the forget lr, retain lr fixed, pick the lowest Gap.

Runs the benchmark once per factor (every configured forget lr times the factor) into
--out/factor-<f>/, then writes --out/sweep.json and --out/best.yaml, a preset fragment to layer on
the base preset: dualoptim bench --preset BASE --preset OUT/best.yaml.
"""

from __future__ import annotations

import argparse

from dualoptim.cli.bench import add_arguments as add_bench_arguments

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bench_arguments(parser, out="out/sweep")
    parser.add_argument(
        "--factors", nargs="+", default=["0.3,1,3"], metavar="F",
        help="multipliers of the forget lrs, e.g. 0.1,0.3,1,3 (default: 0.3,1,3)",
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
        vision_config(args), factors, args.out, progress_bar=not args.no_progress,
        command=command_line("sweep", args),
    )  # fmt: skip
    print("| Method | Strategy | " + " | ".join(f"x{f:g}" for f in factors) + " | best forget lr |")
    print("|---|---|" + "---|" * len(factors) + "---|")
    for method, strategies in summary["grid"].items():
        for strategy, points in strategies.items():
            gaps = " | ".join(
                "failed" if p["Gap"] is None else f"{p['forget_lr']:.2g}: Gap {p['Gap']:.2f}" for p in points
            )
            best = summary["best_forget_lr"].get(method, {}).get(strategy, "–")
            print(f"| {method} | {strategy} | {gaps} | {best} |")
    print(f"best learning rates in {args.out}/best.yaml")
    return 0
