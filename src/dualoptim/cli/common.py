"""The one vocabulary of every ``dualoptim`` command that runs unlearning.

Every such command takes the same flags, written the same way:

    --preset NAME|FILE     repeatable, later layers win (``dualoptim presets`` lists them)
    --set KEY=VALUE        repeatable, any config key (``dualoptim config TASK`` lists them)
    --methods A,B          the task's methods (TOFU: its loss combinations, also ``--losses``)
    --strategies A,B       joint, alternate, dual, dual+, ... (``--optimizers`` is an alias)
    --seeds 0,1,2          seeds; TOFU also ``--tasks 1,2,3``
    --data DIR  --cache-dir DIR  --out DIR  --device NAME  --threads N  --no-progress

A list is comma- or space-separated (``--seeds 0,1,2`` is ``--seeds 0 1 2``, and ``--set seeds=0,1,2``
or ``--set 'seeds=[0, 1, 2]'`` in an override). Flags win over
``--set``, which wins over the presets, which win over the defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

__all__ = [
    "Flag",
    "OneLineParser",
    "add_run_arguments",
    "command_line",
    "config_from_args",
    "fail",
    "print_config",
    "split_names",
]

T = TypeVar("T")


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``dualoptim <command>: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


@dataclass(frozen=True)
class Flag:
    """How a command-line flag maps onto a config key."""

    key: str
    #: converts each item of a list flag (``int`` for seeds); None: the flag's value as given
    item: Callable[[str], Any] | None = None
    is_list: bool = True


def add_run_arguments(parser: argparse.ArgumentParser, *, task: str, out: str, methods_help: str) -> None:
    """The shared flags (see the module docstring)."""
    parser.add_argument(
        "--preset", action="append", default=[], metavar="NAME|FILE",
        help=f"YAML preset (`dualoptim presets {task}`) or file; repeat to layer them (later wins)",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"override any config key, e.g. --set unlearn.batch_size=32 (repeatable; `dualoptim config {task}`)",
    )  # fmt: skip
    parser.add_argument("--methods", nargs="+", metavar="NAME", help=methods_help)
    parser.add_argument(
        "--strategies", "--optimizers", dest="strategies", nargs="+", metavar="NAME",
        help="strategies: joint, alternate, alternate-2lr, dual, dual+, dual+-ref, dual-8bit, dual+-8bit "
        "(`dualoptim strategies`)",
    )  # fmt: skip
    parser.add_argument("--seeds", nargs="+", metavar="N", help="seeds, e.g. 0,1,2 (default: the preset's)")
    parser.add_argument("--data", metavar="DIR", help="folder holding the data (default: ../shared/data or $DUALOPTIM_DATA_ROOT)")
    parser.add_argument("--cache-dir", metavar="DIR", help="cache of trained models (default: $DUALOPTIM_CACHE or ~/.cache/dualoptim)")
    parser.add_argument("--device", help="cpu | cuda | cuda:N | auto (default: the preset's; auto = cuda when available)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", default=out, metavar="DIR", help=f"output folder (default: {out})")


def split_names(values: Sequence[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: lists may be comma- or space-separated."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _flag_value(name: str, flag: Flag, value: Any) -> Any:
    if not flag.is_list:
        return value
    items = split_names(value)
    if not items:
        raise ValueError(f"--{name.replace('_', '-')} needs at least one value")
    if flag.item is None:
        return items
    converted = []
    for item in items:
        try:
            converted.append(flag.item(item))
        except ValueError:
            kind = getattr(flag.item, "__name__", "value")
            raise ValueError(f"--{name.replace('_', '-')} expects {kind}s, got {item!r}") from None
    return converted


def config_from_args(args: argparse.Namespace, cls: type[T], task: str, flags: dict[str, Flag]) -> T:
    """Defaults <- ``--preset``s <- ``--set``s <- the explicit flags named in ``flags`` (dest -> config key)."""
    from dualoptim.config import from_dict, load_config

    config = load_config(cls, task, args.preset, args.overrides)
    data: dict[str, Any] = {}
    for name, flag in flags.items():
        value = getattr(args, name, None)
        if value is None or value is False:
            continue
        node = data
        *sections, last = flag.key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[last] = _flag_value(name, flag, value)
    return from_dict(cls, data, base=config) if data else config


def command_line(name: str, args: argparse.Namespace) -> list[str]:
    """The command as a user would type it, rebuilt from the parsed options (stored with the results)."""
    words = ["dualoptim", name]
    for key, value in vars(args).items():
        if key.startswith("_") or key == "command" or value in (None, False, []):
            continue
        flag = "--set" if key == "overrides" else "--" + key.replace("_", "-")
        if key == "hub":  # a switch stored as the value it stands for
            words.append(flag)
        elif value is True:
            words.append(flag)
        elif isinstance(value, list) and key in ("preset", "overrides"):
            for item in value:
                words += [flag, str(item)]
        elif isinstance(value, list):
            words += [flag, ",".join(str(v) for v in value)]
        else:
            words += [flag, str(value)]
    return words


def print_config(config: Any) -> None:
    """The effective configuration, printed before any work (it is also saved with the results)."""
    import yaml

    from dualoptim.config import to_dict

    print("# effective configuration\n" + yaml.safe_dump(to_dict(config), sort_keys=False), flush=True)


def fail(command: str, error: BaseException) -> int:
    """Report ``error`` as the one line ``dualoptim <command>: error: ...`` and return exit status 2."""
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"dualoptim {command}: error: {message}", file=sys.stderr)
    return 2
