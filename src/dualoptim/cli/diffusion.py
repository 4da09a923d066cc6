"""Unlearn one class of a class-conditional diffusion model per run (default: Fashion-MNIST DDPM; SA, SalUn, SFRon x alternate, dual, dual+).

Writes results.json, table.md, config.yaml, fa_fd.png and one sample grid PNG per run to --out.
The original model and the classifier are trained once and cached; finished runs are kept, so an
interrupted benchmark resumes where it stopped.

Example: dualoptim diffusion --preset fashion-mnist-ddpm --classes 0,1,7 --methods SFRon --strategies alternate,dual
"""

from __future__ import annotations

import argparse

from dualoptim.cli.common import Flag, add_run_arguments

__all__ = ["DIFFUSION_FLAGS", "add_arguments", "run"]

#: command-line flag (argparse dest) -> diffusion config key
DIFFUSION_FLAGS = {
    "methods": Flag("methods"),
    "strategies": Flag("strategies"),
    "seeds": Flag("seeds", int),
    "classes": Flag("unlearn.forget_classes"),
    "data": Flag("data.root", is_list=False),
    "cache_dir": Flag("cache_dir", is_list=False),
    "device": Flag("device", is_list=False),
    "threads": Flag("threads", is_list=False),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, task="diffusion", out="out/diffusion",
                      methods_help="methods: GA, RL, SA, SalUn, SFRon (default: the preset's)")  # fmt: skip
    parser.add_argument("--classes", nargs="+", metavar="CLASS",
                        help="classes to forget, by index or name, one run each (default: the preset's)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from dualoptim.cli.common import command_line, config_from_args, print_config
    from dualoptim.diffusion.benchmark import run_benchmark, validate
    from dualoptim.diffusion.config import TASK, DiffusionConfig
    from dualoptim.diffusion.report import markdown_table, write_report

    config = config_from_args(args, DiffusionConfig, TASK, DIFFUSION_FLAGS)
    validate(config)  # bad values fail before the configuration is printed and any work starts
    print_config(config)
    results = run_benchmark(config, args.out, progress_bar=not args.no_progress, command=command_line("diffusion", args))
    write_report(results, args.out)
    print(markdown_table(results))
    print(f"results, table, figure and grids in {args.out}")
    return 0
