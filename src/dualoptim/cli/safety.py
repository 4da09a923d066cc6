"""Unlearn harmful behaviour from an LLM with each loss x strategy, judge the answers, and tabulate.

Example: dualoptim safety --preset safety-tiny --methods IDK+GD --strategies joint,alternate,dual,dual+ --seeds 0,1,2
The effective config is printed and saved as config.yaml; results land in results.json and table.md.
Rerunning with the same --out resumes: finished runs are not recomputed. The judge that produced the
numbers is named in both (judge.model, or the offline string classifier; judge.fallback=true lets the
string classifier stand in for a judge model that cannot be loaded, and says so).
"""

from __future__ import annotations

import argparse

from dualoptim.cli.common import Flag, add_run_arguments

__all__ = ["SAFETY_FLAGS", "add_arguments", "run", "safety_config"]

#: command-line flag (argparse dest) -> safety config key
SAFETY_FLAGS = {
    "methods": Flag("losses"),
    "strategies": Flag("strategies"),
    "seeds": Flag("seeds", int),
    "data": Flag("data.path", is_list=False),
    "judge": Flag("judge.model", is_list=False),
    "judge_fallback": Flag("judge.fallback", is_list=False),
    "cache_dir": Flag("cache_dir", is_list=False),
    "device": Flag("device", is_list=False),
    "threads": Flag("threads", is_list=False),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(
        parser, task="safety", out="out/safety",
        methods_help="FORGET+RETAIN losses, e.g. IDK+GD,NPO+GD,DPO+GD (also --losses; default: the preset's)",
    )  # fmt: skip
    parser.add_argument("--losses", dest="methods", nargs="+", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--judge", metavar="ID", help="refusal classifier: hub id or folder (default: the preset's)")
    parser.add_argument(
        "--judge-fallback", action="store_true", default=None,
        help="judge with the string classifier when --judge cannot be loaded (said in the results)",
    )  # fmt: skip


def safety_config(args: argparse.Namespace):
    """The safety config of the parsed flags (the CPU preset ``safety-tiny`` unless another is named)."""
    from dualoptim.cli.common import config_from_args
    from dualoptim.safety.config import TASK, SafetyConfig

    if not args.preset:
        args.preset = ["safety-tiny"]
    return config_from_args(args, SafetyConfig, TASK, SAFETY_FLAGS)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dualoptim.cli.common import command_line, print_config
    from dualoptim.safety.benchmark import run_benchmark
    from dualoptim.safety.config import validate

    config = safety_config(args)
    validate(config)  # bad values fail before the configuration is printed and any work starts
    print_config(config)
    results = run_benchmark(config, args.out, progress=not args.no_progress, command=command_line("safety", args))
    print((Path(args.out) / "table.md").read_text(encoding="utf-8"))
    print(f"results: {Path(args.out) / 'results.json'} ({results['seconds']:.0f} s)")
    return 0
