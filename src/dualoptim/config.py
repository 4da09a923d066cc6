"""The one configuration system: typed dataclasses, YAML presets, ``--preset`` layers and ``--set`` overrides.

Every task describes its options as dataclasses whose fields carry their help text
(:func:`option`). A configuration is built in layers, later layers winning key by key:

    the dataclass defaults  <-  each preset in order  <-  each ``--set key=value``

Presets are YAML files in ``dualoptim/configs/<task>/`` (listed by ``dualoptim presets``) or any
YAML file path. A preset only overrides defaults: an unknown key is an error that lists the valid
keys, and a value of the wrong type names the key and the type expected. Nested sections merge
field by field, and mappings of sections (per-method overrides) merge per key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "PRESET_ROOT",
    "KeyHelp",
    "apply_override",
    "describe",
    "from_dict",
    "load_config",
    "option",
    "preset_names",
    "preset_path",
    "read_preset",
    "to_dict",
]

T = TypeVar("T")
PRESET_ROOT = Path(__file__).resolve().parent / "configs"


def option(help: str, default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its help text: ``epochs: int = option("training epochs", 30)``."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


# -- building a config from data -------------------------------------------------------------------


def from_dict(cls: type[T], data: dict[str, Any], where: str = "", base: T | None = None) -> T:
    """Build dataclass ``cls`` from nested ``data``, starting from ``base`` (or the defaults).

    Unknown keys and values of the wrong type are ``ValueError``s naming the key. Nested
    dataclasses merge field by field; mappings merge per key (their dataclass values field by field).
    """
    if not isinstance(data, dict):
        raise ValueError(f"config key {where or '(top level)'!r} must be a mapping, got {data!r}")
    instance = base if base is not None else cls()
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    changes = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ValueError(f"unknown config key {path!r}; valid: {', '.join(sorted(names))}")
        changes[key] = _merge_value(hints[key], getattr(instance, key), value, path)
    try:
        return dataclasses.replace(instance, **changes)
    except (TypeError, ValueError) as error:
        raise ValueError(f"config {where or '(top level)'}: {error}") from None


def _merge_value(hint: Any, current: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, path, base=current)
    if typing.get_origin(hint) is dict and isinstance(value, dict) and isinstance(current, dict):
        _, value_hint = typing.get_args(hint)
        merged = dict(current)
        for k, v in value.items():
            key = str(k)
            if dataclasses.is_dataclass(value_hint) and isinstance(v, dict):
                merged[key] = from_dict(value_hint, v, f"{path}.{key}", base=merged.get(key))
            else:
                merged[key] = check_type(v, value_hint, f"{path}.{key}")
        return merged
    return check_type(value, hint, path)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(hint))}]"
    return getattr(hint, "__name__", str(hint))


def check_type(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to ``hint`` where that is lossless (int -> float, list -> tuple, "1e-3" -> float).

    Anything else of the wrong type is a ``ValueError`` naming ``where`` and the type expected.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option_hint in args:
            if option_hint is type(None):
                continue
            try:
                return check_type(value, option_hint, where)
            except ValueError:
                continue
        raise ValueError(f"config key {where!r} must be {_type_name(hint)}, got {value!r}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"config key {where!r} must be a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {where!r} must be a mapping, got {value!r}")
        return {str(k): check_type(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if isinstance(value, str) and value.strip():
            # "0,1,2" is the list [0, 1, 2], as on the command line: lists are written one way
            import yaml

            value = [yaml.safe_load(part) for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {where!r} must be a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ValueError(f"config key {where!r} needs {len(args)} values, got {value!r}")
            return tuple(check_type(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0]
        items = [check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
            except ValueError:
                pass
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ValueError(f"config key {where!r} must be {_type_name(hint)}, got {value!r}")


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON/YAML-ready data (what is printed and saved with every result)."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- presets and overrides ---------------------------------------------------------------------------


def preset_names(task: str) -> list[str]:
    """The presets shipped for ``task`` (a folder of ``dualoptim/configs``)."""
    folder = PRESET_ROOT / task
    if not folder.is_dir():
        tasks = sorted(p.name for p in PRESET_ROOT.iterdir() if p.is_dir())
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(tasks)}")
    return sorted(p.stem for p in folder.glob("*.yaml"))


def preset_path(task: str, name_or_path: str) -> Path:
    """A preset name of ``task`` or a YAML file path, as the file it names."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        if not path.is_file():
            raise ValueError(f"preset file does not exist: {path}")
        return path
    if name_or_path not in preset_names(task):
        raise ValueError(
            f"unknown preset {name_or_path!r}; valid: {', '.join(preset_names(task))} or a YAML file"
        )
    return PRESET_ROOT / task / f"{name_or_path}.yaml"


def read_preset(task: str, name_or_path: str) -> dict[str, Any]:
    """The raw mapping of a preset."""
    import yaml

    path = preset_path(task, name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"preset {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"preset {path} must be a YAML mapping, got {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """``"unlearn.steps=60"`` -> ``data["unlearn"]["steps"] = 60`` (the value is parsed as YAML)."""
    import yaml

    key, sep, raw = assignment.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ValueError(f"--set needs KEY=VALUE with a dotted key, got {assignment!r}")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: {part!r} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError:
        node[parts[-1]] = raw
    return data


def load_config(
    cls: type[T], task: str, presets: Sequence[str] = (), overrides: Iterable[str] = (), base: T | None = None
) -> T:
    """Defaults (or ``base``) <- each preset of ``task`` in order <- each ``KEY=VALUE`` override."""
    config = base if base is not None else cls()
    for preset in presets:
        config = from_dict(cls, read_preset(task, preset), base=config)
    data: dict[str, Any] = {}
    for assignment in overrides:
        apply_override(data, assignment)
    return from_dict(cls, data, base=config) if data else config


# -- describing a config ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyHelp:
    """One configuration key: dotted name, type, default and help."""

    key: str
    type: str
    default: Any
    help: str


def describe(cls: type, prefix: str = "", instance: Any = None) -> list[KeyHelp]:
    """Every key of ``cls`` (nested sections flattened to dotted names), for ``dualoptim config``.

    Defaults are those of the enclosing default (a section's factory may differ from its class's
    own defaults: the vision default schedule is 3 passes, the class's fields are unset).
    """
    instance = cls() if instance is None else instance
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys.append(KeyHelp(name, "section", None, f.metadata.get("help", "")))
            keys += describe(hint, f"{name}.", getattr(instance, f.name))
        else:
            keys.append(KeyHelp(name, _type_name(hint), _plain(getattr(instance, f.name)), f.metadata.get("help", "")))
    return keys
