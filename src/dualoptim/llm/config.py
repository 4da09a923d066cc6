"""Typed configuration of a TOFU run: the single source of options.

YAML presets (``src/dualoptim/configs/tofu-*.yaml``) and ``--set section.key=value`` overrides
only change these defaults; an unknown key is an error that names it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dualoptim.llm.data import QAFormat
from dualoptim.llm.models import TinyModelConfig

EVAL_SETS = ("forget", "retain", "real_authors", "world_facts")


@dataclass
class ModelSection:
    """Which model to unlearn."""

    #: "tiny": build, train and cache the CPU stand-in; "pretrained": load ``name_or_path``
    kind: str = "tiny"
    #: hub id or local folder of the fine-tuned target model (kind "pretrained")
    name_or_path: str | None = None
    #: hub id or folder of a model fine-tuned without the forget rows, per split
    #: (``{"forget10": "..."}``) for Forget Quality; a missing entry makes it absent
    retain_model: dict[str, str] = field(default_factory=dict)
    dtype: str = "float32"
    #: pad with this token when the tokenizer has none ("eos" = the eos token); null = require one
    pad_token: str | None = None
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class DataSection:
    """Where TOFU comes from and how its rows become tokens."""

    #: "local" (a folder of TOFU's JSON files) or "hub" (locuslab/TOFU through ``datasets``)
    source: str = "local"
    #: the local folder; null = ``dualoptim.paths.default_data_root() / "tofu"``
    path: str | None = None
    split: str = "forget10"
    format: QAFormat = field(default_factory=QAFormat)
    max_length: int = 256
    #: sets to evaluate; the tiny preset keeps forget and retain (it never saw real authors or world facts)
    eval_sets: list[str] = field(default_factory=lambda: list(EVAL_SETS))
    #: first N items of each evaluation set (TOFU: up to 300)
    eval_size: int = 300
    max_new_tokens: int = 200
    eval_batch_size: int = 32


@dataclass
class UnlearnSection:
    """The unlearning run: steps, batches, optimizer settings, alternation, loss weights."""

    steps: int = 300
    batch_size: int = 8
    gradient_accumulation_steps: int = 4
    lr: float = 1e-5
    forget_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    plus_betas: tuple[float, float, float, float] = (0.9, 0.95, 0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    forget_freq: int = 1
    retain_freq: int = 5
    forget_coeff: float = 1.0
    regularization_coeff: float = 1.0
    #: β of NPO, DPO and AP
    beta: float = 0.1
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    #: forget/retain Probability on a few items every N optimizer steps, for the plot
    eval_every: int = 10
    trajectory_size: int = 32
    #: save a Trainer checkpoint every N steps (0 = never); a rerun resumes from the last one
    save_steps: int = 0
    bf16: bool = False


@dataclass
class TofuConfig:
    """A whole ``dualoptim tofu`` run: every (task, loss, strategy) combination."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    unlearn: UnlearnSection = field(default_factory=UnlearnSection)
    losses: list[str] = field(default_factory=lambda: ["ME+GD", "IDK+GD"])
    strategies: list[str] = field(default_factory=lambda: ["joint", "alternate", "dual", "dual+"])
    #: forget task ids; they play the role of seeds (each is a different forget set)
    tasks: list[str] = field(default_factory=lambda: ["1"])
    seed: int = 0
    #: torch CPU threads (null = torch's default)
    threads: int | None = None


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from nested dicts; unknown keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown key {where}.{unknown[0]}; valid: {', '.join(sorted(names))}")
    kwargs = {key: _convert(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    defaults = cls()
    merged = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(cls)}
    merged.update(kwargs)
    return cls(**merged)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        if origin is tuple:
            if len(args) != len(value):
                raise ValueError(f"{where} needs {len(args)} values, got {value!r}")
            return tuple(_convert(a, v, where) for a, v in zip(args, value))
        return [_convert(args[0], v, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, got {value!r}") from None
        if hint is int and float(value) != number:
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return number
    if hint is str:
        return str(value)
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """The effective config as plain JSON-able data."""
    return dataclasses.asdict(config)


def preset_names() -> list[str]:
    folder = resources.files("dualoptim") / "configs"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.startswith("tofu-"))


def load_preset(name: str) -> dict[str, Any]:
    """The overrides of an embedded preset (``tofu-tiny``) or of a YAML file path."""
    import yaml

    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"config file {name!r} does not exist")
        text = path.read_text(encoding="utf-8")
    else:
        if name not in preset_names():
            raise ValueError(f"unknown preset {name!r}; valid: {', '.join(preset_names())}")
        text = (resources.files("dualoptim") / "configs" / f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """``"unlearn.steps=60"`` -> ``data["unlearn"]["steps"] = 60`` (value parsed as YAML)."""
    import yaml

    if "=" not in assignment:
        raise ValueError(f"--set needs KEY=VALUE, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def build_config(preset: str | None, overrides: dict[str, Any] | None = None) -> TofuConfig:
    """Defaults <- preset <- overrides (nested dicts), validated."""
    data: dict[str, Any] = _merge(load_preset(preset) if preset else {}, overrides or {})
    config = from_dict(TofuConfig, data)
    validate(config)
    return config


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge: sections merge key by key, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate(config: TofuConfig) -> None:
    """Catch bad names and values before hours of compute."""
    from dualoptim.llm.data import SPLITS
    from dualoptim.llm.losses import parse_loss
    from dualoptim.llm.strategies import STRATEGIES

    for loss in config.losses:
        parse_loss(loss)
    for strategy in config.strategies:
        STRATEGIES.get(strategy)
    if config.data.split not in SPLITS:
        raise ValueError(f"unknown split {config.data.split!r}; valid: {', '.join(SPLITS)}")
    if config.model.kind not in ("tiny", "pretrained"):
        raise ValueError(f"unknown model.kind {config.model.kind!r}; valid: tiny, pretrained")
    if config.model.kind == "pretrained" and not config.model.name_or_path:
        raise ValueError("model.kind 'pretrained' needs model.name_or_path")
    if config.data.source not in ("local", "hub"):
        raise ValueError(f"unknown data.source {config.data.source!r}; valid: local, hub")
    for name in config.data.eval_sets:
        if name not in EVAL_SETS:
            raise ValueError(f"unknown evaluation set {name!r}; valid: {', '.join(EVAL_SETS)}")
    if "forget" not in config.data.eval_sets:
        raise ValueError("data.eval_sets must include 'forget'")
    if not config.tasks:
        raise ValueError("tasks must name at least one forget task")
    for key in ("steps", "batch_size", "gradient_accumulation_steps", "eval_every"):
        if getattr(config.unlearn, key) < 1:
            raise ValueError(f"unlearn.{key} must be >= 1, got {getattr(config.unlearn, key)}")
