"""The ``dualoptim`` command line: ``main(argv) -> int``.

Each subcommand lives in its own module here with ``add_arguments(parser)`` and
``run(args) -> int``, and a module docstring whose first line is its help. Modules import their
task inside ``run`` so that ``dualoptim --help`` stays fast. The CLI is the one layer above the
tasks: it imports them; nothing imports it. Bad input of any command ends in one line
``dualoptim <command>: error: ...`` and exit status 2 (:mod:`dualoptim.cli.common`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dualoptim.cli.common import OneLineParser, fail

__all__ = ["COMMANDS", "build_parser", "main"]

# subcommand -> module, in the order users meet them.
COMMANDS: dict[str, str] = {
    "bench": "dualoptim.cli.bench",
    "tofu": "dualoptim.cli.tofu",
    "safety": "dualoptim.cli.safety",
    "train": "dualoptim.cli.train",
    "unlearn": "dualoptim.cli.unlearn",
    "audit": "dualoptim.cli.audit",
    "diffusion": "dualoptim.cli.diffusion",
    "sweep": "dualoptim.cli.sweep",
    "report": "dualoptim.cli.report",
    "strategies": "dualoptim.cli.strategies",
    "presets": "dualoptim.cli.presets",
    "config": "dualoptim.cli.configkeys",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="dualoptim", description="Stable machine unlearning with dual optimizers.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        help_line = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None
        sub = subparsers.add_parser(
            name, help=help_line, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run, _name=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # the subcommand's own parser reports them, so the error names the command
            _subparsers(parser).get(getattr(args, "_name", None), parser).error(
                f"unrecognized arguments: {' '.join(extra)}"
            )
    except SystemExit as stop:  # --help (0) or a one-line usage error (2)
        return int(stop.code or 0)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        # bad input (a name, a path, a value): one clear line instead of a traceback
        return fail(args._name, error)
    except ImportError as error:
        # an optional extra that the asked-for path needs (datasets for --hub, torchvision, ...)
        return fail(args._name, f"{error}; install the extra that provides it (see the README's install line)")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


if __name__ == "__main__":
    sys.exit(main())
