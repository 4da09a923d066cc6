"""Run the multi-seed image-classification unlearning benchmark (default: digits, every method x strategy, 5 seeds).

Writes results.json, table.md, config.yaml and PNG plots to --out. Trained models are cached and
finished runs are kept, so an interrupted benchmark resumes where it stopped.

Example: dualoptim bench --preset fashion-mnist --methods SalUn,SFRon --strategies alternate,dual --seeds 0,1,2
"""

from __future__ import annotations

import argparse

from dualoptim.cli.common import Flag, add_run_arguments

__all__ = ["VISION_FLAGS", "add_arguments", "run"]

#: command-line flag (argparse dest) -> vision config key
VISION_FLAGS = {
    "methods": Flag("methods"),
    "strategies": Flag("strategies"),
    "seeds": Flag("seeds", int),
    "data": Flag("data.root", is_list=False),
    "cache_dir": Flag("cache_dir", is_list=False),
    "device": Flag("device", is_list=False),
    "threads": Flag("threads", is_list=False),
    "jobs": Flag("jobs", is_list=False),
}


def add_arguments(parser: argparse.ArgumentParser, out: str = "out/bench") -> None:
    add_run_arguments(
        parser, task="vision", out=out,
        methods_help="methods: FT, GA, NegGrad+, RL, SalUn, SCRUB, SFRon (default: the preset's)",
    )  # fmt: skip
    parser.add_argument("--data-root", dest="data", help=argparse.SUPPRESS)  # the name before --data
    parser.add_argument(
        "--jobs", type=int, metavar="N",
        help="run N independent runs at a time in worker processes (one GPU each in turn; default 1)",
    )  # fmt: skip


def vision_config(args: argparse.Namespace):
    from dualoptim.cli.common import config_from_args
    from dualoptim.vision.config import TASK, VisionConfig

    return config_from_args(args, VisionConfig, TASK, VISION_FLAGS)


def run(args: argparse.Namespace) -> int:
    from dualoptim.cli.common import command_line, print_config
    from dualoptim.vision.benchmark import run_benchmark, validate
    from dualoptim.vision.report import markdown_table, write_report

    config = vision_config(args)
    validate(config)  # bad values fail before the configuration is printed and any work starts
    print_config(config)
    results = run_benchmark(config, args.out, progress_bar=not args.no_progress, command=command_line("bench", args))
    write_report(results, args.out)
    print(markdown_table(results))
    print(f"results, table and plots in {args.out}")
    return 0
