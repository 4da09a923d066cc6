"""Unlearn TOFU authors from an LLM with each loss x strategy, evaluate, and tabulate.

Example: ``dualoptim tofu --preset tofu-tiny --losses ME+GD IDK+GD --tasks 1 2 3 --out out/tofu``.
The effective config is printed and saved as ``config.json``; results land in ``results.json``,
``table.md`` and ``tofu_curves.png``. Rerunning with the same ``--out`` resumes: finished runs are
not recomputed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        default="tofu-tiny",
        help="embedded preset (tofu-tiny, tofu-phi15, tofu-llama2-7b) or a YAML file; default tofu-tiny",
    )
    parser.add_argument("--losses", nargs="+", help="FORGET+RETAIN names, e.g. ME+GD IDK+AP NPO+GD")
    parser.add_argument("--strategies", nargs="+", help="joint, alternate, dual, dual+ (default: all four)")
    parser.add_argument("--split", help="forget01, forget05 or forget10")
    parser.add_argument("--tasks", nargs="+", help="forget task ids, used as seeds (default 1)")
    parser.add_argument("--data", help="local TOFU folder (default ../shared/data/tofu)")
    parser.add_argument("--hub", action="store_true", help="load TOFU from the hub (needs dualoptim[hub])")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set unlearn.steps=60 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=Path("out/tofu"), help="output folder (default out/tofu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import sys

    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as error:
        # bad input (a name, a path, a value): one clear line instead of a traceback
        print(f"dualoptim tofu: error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import json

    from dualoptim.llm.benchmark import run_benchmark
    from dualoptim.llm.config import apply_override, build_config, load_preset, to_dict

    data = load_preset(args.preset) if args.preset else {}
    for assignment in args.overrides:
        apply_override(data, assignment)
    if args.losses:
        data["losses"] = args.losses
    if args.strategies:
        data["strategies"] = args.strategies
    if args.tasks:
        data["tasks"] = [str(t) for t in args.tasks]
    if args.threads:
        data["threads"] = args.threads
    section = data.setdefault("data", {})
    if args.split:
        section["split"] = args.split
    if args.data:
        section["path"] = args.data
    if args.hub:
        section["source"] = "hub"
    config = build_config(None, data)
    print("effective config:\n" + json.dumps(to_dict(config), indent=2))
    import sys

    command = ["dualoptim", *sys.argv[1:]] if sys.argv and "pytest" not in sys.argv[0] else None
    results = run_benchmark(config, args.out, progress=not args.no_progress, command=command)
    print((args.out / "table.md").read_text())
    print(f"results: {args.out / 'results.json'} ({results['seconds']:.0f} s)")
    return 0
