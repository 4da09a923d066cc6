"""The ``dualoptim`` command line.

Each subcommand lives in its own module under ``dualoptim.commands`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``, and a module docstring whose first line is its
help. Modules keep heavy imports inside ``run`` so that ``dualoptim --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module; keep sorted by the order users meet them.
COMMANDS: dict[str, str] = {
    "bench": "dualoptim.commands.bench",
    "report": "dualoptim.commands.report",
    "sweep": "dualoptim.commands.sweep",
    "tofu": "dualoptim.commands.tofu",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualoptim", description="Stable machine unlearning with dual optimizers."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        help_line = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None
        sub = subparsers.add_parser(name, help=help_line, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
