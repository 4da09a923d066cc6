"""Unlearn TOFU authors from an LLM with each loss x strategy, evaluate, and tabulate.

Example: dualoptim tofu --preset tofu-tiny --methods ME+GD,IDK+GD --strategies dual,dual+ --tasks 1,2,3
The real-person task of the closer look and DualOptim+ runs through the same command:
dualoptim tofu --preset real-world-tiny (CPU) or --preset real-world-llama3-8b (GPU).
The effective config is printed and saved as config.yaml; results land in results.json, table.md
and tofu_curves.png. Rerunning with the same --out resumes: finished runs are not recomputed.
"""

from __future__ import annotations

import argparse

from dualoptim.cli.common import Flag, add_run_arguments

__all__ = ["TOFU_FLAGS", "add_arguments", "add_tofu_arguments", "run", "tofu_config"]

#: command-line flag (argparse dest) -> TOFU config key
TOFU_FLAGS = {
    "methods": Flag("losses"),
    "strategies": Flag("strategies"),
    "seeds": Flag("seeds", int),
    "tasks": Flag("tasks"),
    "split": Flag("data.split", is_list=False),
    "data": Flag("data.path", is_list=False),
    "hub": Flag("data.source", is_list=False),
    "cache_dir": Flag("cache_dir", is_list=False),
    "device": Flag("device", is_list=False),
    "threads": Flag("threads", is_list=False),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(
        parser, task="tofu", out="out/tofu",
        methods_help="FORGET+RETAIN losses, e.g. ME+GD,IDK+AP,NPO+GD (also --losses; default: the preset's)",
    )  # fmt: skip
    parser.set_defaults(preset=None)
    add_tofu_arguments(parser)
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print each strategy's memory estimate (weights, gradients, optimizer states, activations) "
        "from the model config, without loading weights or data, and exit",
    )  # fmt: skip


def add_tofu_arguments(parser: argparse.ArgumentParser) -> None:
    """The TOFU flags beside the shared ones (``dualoptim tofu`` and ``dualoptim sweep --task tofu``)."""
    parser.add_argument("--losses", dest="methods", nargs="+", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--tasks", nargs="+", metavar="T", help="forget task ids, e.g. 1,2,3 (real_world: all, or a person 1-20; default: the preset's)")
    parser.add_argument("--split", help="TOFU forget split: forget01, forget05 or forget10")
    parser.add_argument(
        "--hub", action="store_const", const="hub", default=None, help="load TOFU from the hub (needs dualoptim[hub])"
    )


def tofu_config(args: argparse.Namespace):
    """The TOFU config of the parsed flags (the CPU preset ``tofu-tiny`` unless another is named)."""
    from dualoptim.cli.common import config_from_args
    from dualoptim.llm.config import TASK, TofuConfig

    if not args.preset:
        args.preset = ["tofu-tiny"]
    return config_from_args(args, TofuConfig, TASK, TOFU_FLAGS)


def run(args: argparse.Namespace) -> int:
    from dualoptim.cli.common import command_line, print_config
    from dualoptim.llm.benchmark import run_benchmark
    from dualoptim.llm.config import validate

    config = tofu_config(args)
    validate(config)  # bad values fail before the configuration is printed and any work starts
    if args.dry_run:
        from dualoptim.llm.memory import dry_run

        print(dry_run(config))
        return 0
    print_config(config)
    results = run_benchmark(config, args.out, progress=not args.no_progress, command=command_line("tofu", args))
    from pathlib import Path

    print((Path(args.out) / "table.md").read_text(encoding="utf-8"))
    print(f"results: {Path(args.out) / 'results.json'} ({results['seconds']:.0f} s)")
    return 0
