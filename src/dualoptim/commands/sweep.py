"""Tune forget learning rates as the papers do: grid over the forget lr, retain lr fixed, pick the lowest Gap.

Runs the benchmark once per factor (every configured forget lr times the factor) into
--out/factor-<f>/, then writes --out/sweep.json and --out/best.yaml, a preset fragment to layer on
the base preset: dualoptim bench --preset BASE --preset OUT/best.yaml.
"""

from __future__ import annotations

import argparse

from dualoptim.commands._bench_args import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--factors",
        default="0.3,1,3",
        help="comma-separated multipliers of the forget lrs (default: 0.3,1,3)",
    )
    parser.add_argument("--out", default="out/sweep", help="output folder (default: out/sweep)")


def run(args: argparse.Namespace) -> int:
    import sys

    import torch

    from dualoptim.benchmark.sweep import run_sweep
    from dualoptim.commands._bench_args import command_line, config_from_args

    try:
        try:
            factors = [float(f) for f in args.factors.split(",") if f.strip()]
        except ValueError:
            raise ValueError(f"--factors must be comma-separated numbers, got {args.factors!r}") from None
        config = config_from_args(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        summary = run_sweep(
            config, factors, args.out, progress_bar=not args.no_progress, command=command_line("sweep", args)
        )
    except ValueError as error:
        print(f"dualoptim sweep: error: {error}", file=sys.stderr)
        return 2
    print("| Method | Optimizer | " + " | ".join(f"x{f:g}" for f in factors) + " | best forget lr |")
    print("|---|---|" + "---|" * len(factors) + "---|")
    for method, strategies in summary["grid"].items():
        for strategy, points in strategies.items():
            gaps = " | ".join(
                "failed" if p["Gap"] is None else f"{p['forget_lr']:.2g}: Gap {p['Gap']:.2f}" for p in points
            )
            print(
                f"| {method} | {strategy} | {gaps} | {summary['best_forget_lr'].get(method, {}).get(strategy, '–')} |"
            )
    print(f"best learning rates in {args.out}/best.yaml")
    return 0
