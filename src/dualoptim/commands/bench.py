"""Run the multi-seed image-classification unlearning benchmark (default: digits, every method x strategy, 5 seeds).

Writes results.json (SPEC §6), table.md and PNG plots to --out. Trained models are cached and
finished runs are kept, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse

from dualoptim.commands._bench_args import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", default="out/bench", help="output folder (default: out/bench)")


def run(args: argparse.Namespace) -> int:
    import sys

    import torch
    import yaml

    from dualoptim.benchmark.config import config_to_dict
    from dualoptim.benchmark.runner import run_benchmark
    from dualoptim.commands._bench_args import command_line, config_from_args
    from dualoptim.reports import write_report
    from dualoptim.reports.tables import markdown_table

    try:
        config = config_from_args(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        print(
            "# effective configuration\n" + yaml.safe_dump(config_to_dict(config), sort_keys=False),
            flush=True,
        )
        results = run_benchmark(
            config, args.out, progress_bar=not args.no_progress, command=command_line("bench", args)
        )
    except ValueError as error:
        print(f"dualoptim bench: error: {error}", file=sys.stderr)
        return 2
    write_report(results, args.out)
    print(markdown_table(results))
    print(f"results, table and plots in {args.out}")
    return 0
