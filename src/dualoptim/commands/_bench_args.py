"""Options shared by ``dualoptim bench`` and ``dualoptim sweep``: presets and their overrides."""

from __future__ import annotations

import argparse

from dualoptim.benchmark.config import BenchConfig


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        action="append",
        default=None,
        metavar="NAME|FILE",
        help="YAML preset (digits, fashion-mnist, cifar10-resnet18) or file; repeat to layer files (later wins)",
    )
    parser.add_argument("--methods", help="comma-separated methods (default: all of the preset)")
    parser.add_argument("--optimizers", help="comma-separated strategies: joint, alternate, dual, dual+")
    parser.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2,3,4")
    parser.add_argument(
        "--data-root", help="folder holding the data sets (default: ../shared/data or $DUALOPTIM_DATA_ROOT)"
    )
    parser.add_argument(
        "--cache-dir", help="cache of trained models (default: $DUALOPTIM_CACHE or ~/.cache/dualoptim)"
    )
    parser.add_argument(
        "--device", help="cpu | cuda | cuda:N | auto (default: the preset's, auto = cuda when available)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def command_line(name: str, args: argparse.Namespace) -> list[str]:
    """The command as a user would type it, rebuilt from the parsed options (stored with the results)."""
    words = ["dualoptim", name]
    for key, value in vars(args).items():
        if key.startswith("_") or key == "command" or value in (None, False):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return words


def _names(text: str, what: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"no {what} given in {text!r}")
    return names


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The defaults, overridden by each ``--preset`` in order, then by the explicit options."""
    from dualoptim.benchmark.config import load_preset

    config = load_preset(*(args.preset or []))
    if args.methods:
        config.methods = _names(args.methods, "methods")
    if args.optimizers:
        config.optimizers = _names(args.optimizers, "optimizers")
    if args.seeds:
        seeds = _names(args.seeds, "seeds")
        try:
            values = [int(s) for s in seeds]
        except ValueError:
            raise ValueError(f"seeds must be integers, got {args.seeds!r}") from None
        config.seeds = values
    if args.data_root:
        config.data.root = args.data_root
    if args.cache_dir:
        config.cache_dir = args.cache_dir
    if args.device:
        config.device = args.device
    return config
