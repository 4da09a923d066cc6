"""Typed configuration of the image-classification benchmark: the single source of options.

Defaults here are the embedded digits benchmark. YAML presets (``dualoptim/configs/*.yaml``)
override fields by nesting the same names; an unknown key is an error that names it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BenchConfig",
    "DataConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "UnlearnConfig",
    "config_from_dict",
    "config_to_dict",
    "load_preset",
    "preset_names",
    "read_preset",
]

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs"
ALL = ("FT", "GA", "NegGrad+", "RL", "SalUn", "SCRUB", "SFRon")


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class DataConfig:
    dataset: str = _help("digits | fashion-mnist | cifar10 | cifar100 | svhn", "digits")
    root: str | None = _help(
        "folder holding the data sets (default: dualoptim.paths.default_data_root())", None
    )
    train_subset: int | None = _help(
        "use this many training examples (a fixed random subset); None = all", None
    )
    test_subset: int | None = _help("use this many test examples (a fixed random subset); None = all", None)
    forget: str = _help("how the forget set is chosen: random | class | indices", "random")
    forget_fraction: float | None = _help("random: share of the training set to forget, in (0, 1)", 0.1)
    forget_count: int | None = _help("random: number of examples to forget (overrides the fraction)", None)
    forget_class: int | None = _help("class: the label whose examples are all forgotten", None)
    forget_indices: str | None = _help("indices: file of training-set indices (JSON list or integers)", None)


@dataclass
class ModelConfig:
    arch: str = _help("small-cnn | resnet18", "small-cnn")
    width: int = _help("channels of the first stage", 16)
    checkpoint: str | None = _help("a trained original model (state dict); None = train one (cached)", None)


@dataclass
class TrainConfig:
    """How the original (whole training set) and the retrained references (retain set) are trained."""

    epochs: int = _help("training epochs", 30)
    lr: float = _help("SGD learning rate (cosine decay to 0)", 0.05)
    momentum: float = _help("SGD momentum", 0.9)
    weight_decay: float = _help("SGD weight decay", 5e-4)
    batch_size: int = _help("mini-batch size", 64)
    seed: int = _help("seed of the original model's training (retrains use the run seed)", 0)


@dataclass
class ScheduleConfig:
    """Unset fields (None) inherit: global schedule < the method's published defaults < per-method values."""

    outer_iterations: int | None = _help("outer iterations of the loop", None)
    forget_steps: int | str | None = _help(
        "forget steps per outer iteration, or 'pass' (one full pass over D_f)", None
    )
    retain_steps: int | str | None = _help(
        "retain steps per outer iteration, or 'pass' (one full pass over D_r)", None
    )


@dataclass
class MethodConfig:
    """Per-method overrides: hyper-parameters, schedule and learning rates."""

    options: dict[str, Any] = _help("hyper-parameters of the method (its dataclass fields)", factory=dict)
    schedule: ScheduleConfig = _help(
        "schedule of this method (unset fields: the global schedule)", factory=ScheduleConfig
    )
    forget_lr: dict[str, float] = _help(
        "strategy -> forget learning rate (unset: unlearn.optim.forget_lr)", factory=dict
    )
    retain_lr: dict[str, float] = _help(
        "strategy -> retain learning rate (unset: unlearn.optim.retain_lr)", factory=dict
    )


@dataclass
class OptimConfig:
    """Optimizer settings; learning rates are per strategy, forget rates tuned by ``dualoptim sweep``."""

    forget_lr: dict[str, float] = _help(
        "strategy -> forget learning rate",
        factory=lambda: {"joint": 0.01, "alternate": 0.01, "dual": 1e-3, "dual+": 1e-3},
    )
    retain_lr: dict[str, float] = _help(
        "strategy -> retain learning rate (fixed, as in the papers)",
        factory=lambda: {"joint": 0.01, "alternate": 0.01, "dual": 0.01, "dual+": 1e-3},
    )
    momentum: float = _help("SGD momentum (joint, alternate, dual retain)", 0.9)
    weight_decay: float = _help("SGD weight decay", 5e-4)
    forget_betas: list[float] = _help("AdamW betas of the dual forget side", factory=lambda: [0.9, 0.999])
    forget_weight_decay: float = _help("AdamW decoupled weight decay of the dual forget side", 0.05)
    plus_betas: list[float] = _help(
        "DualOptimPlus betas (delta1, delta2, base1, base2)", factory=lambda: [0.9, 0.95, 0.9, 0.95]
    )
    plus_weight_decay: float = _help("DualOptimPlus decoupled weight decay", 0.0)


@dataclass
class UnlearnConfig:
    batch_size: int = _help("mini-batch size of forget and retain batches", 64)
    schedule: ScheduleConfig = _help(
        "default schedule",
        factory=lambda: ScheduleConfig(outer_iterations=3, forget_steps="pass", retain_steps="pass"),
    )
    optim: OptimConfig = _help("optimizer settings", factory=OptimConfig)
    methods: dict[str, MethodConfig] = _help(
        "method name -> overrides",
        factory=lambda: {"SFRon": MethodConfig(schedule=ScheduleConfig(outer_iterations=12))},
    )
    curve_points: int = _help("evaluations along each run for the stability plot", 4)
    curve_examples: int = _help(
        "examples per set used for the curve evaluations (final metrics use all)", 2000
    )
    mia_svc: bool = _help("also report the SVC MIA-efficacy of the SalUn paper (MIA-SVC)", False)


@dataclass
class BenchConfig:
    methods: list[str] = _help("methods to run", factory=lambda: list(ALL))
    optimizers: list[str] = _help(
        "strategies to run each method with",
        factory=lambda: ["joint", "alternate", "dual", "dual+", "dual-8bit", "dual+-8bit"],
    )
    seeds: list[int] = _help(
        "seeds: each decides a forget set, a retrained reference and the unlearning randomness",
        factory=lambda: [0, 1, 2, 3, 4],
    )
    data: DataConfig = _help("data", factory=DataConfig)
    model: ModelConfig = _help("model", factory=ModelConfig)
    train: TrainConfig = _help("training of the original and retrained models", factory=TrainConfig)
    unlearn: UnlearnConfig = _help("unlearning", factory=UnlearnConfig)
    cache_dir: str | None = _help(
        "cache of trained models (default: dualoptim.paths.default_cache_dir())", None
    )
    device: str = _help(
        "where models and data live: cpu | cuda | cuda:N | auto (cuda when available)", "auto"
    )


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Coerce ints to floats where a float is expected; reject values of the wrong type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        errors = []
        for option in typing.get_args(hint):
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where)
            except ValueError as error:
                errors.append(error)
        raise errors[0]
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"config key {where!r} must be a mapping, got {value!r}")
        return config_from_dict(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {where!r} must be a mapping, got {value!r}")
        _, value_hint = typing.get_args(hint)
        return {str(k): _check_type(v, value_hint, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {where!r} must be a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_check_type(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 1e-3 as a string
        except ValueError:
            pass
    if isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ValueError(f"config key {where!r} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def config_from_dict(cls: type, data: dict[str, Any], where: str = "", base: Any = None) -> Any:
    """Build dataclass ``cls`` from ``data``, starting from ``base`` (or the defaults); unknown keys are errors.

    Nested dataclasses merge field by field; dicts of dataclasses merge per key.
    """
    instance = base if base is not None else cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ValueError(f"unknown config key {path!r}; valid: {', '.join(sorted(names))}")
        hint = hints[key]
        current = getattr(instance, key)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value, path, base=current)
        elif typing.get_origin(hint) is dict and isinstance(value, dict) and isinstance(current, dict):
            merged = dict(current)
            (_, value_hint) = typing.get_args(hint)
            for k, v in value.items():
                if dataclasses.is_dataclass(value_hint) and isinstance(v, dict):
                    merged[str(k)] = config_from_dict(value_hint, v, f"{path}.{k}", base=merged.get(str(k)))
                else:
                    merged[str(k)] = _check_type(v, value_hint, f"{path}.{k}")
            value = merged
        else:
            value = _check_type(value, hint, path)
        setattr(instance, key, value)
    return instance


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON/YAML-ready data (what is printed and saved next to the results)."""
    return dataclasses.asdict(config)


def _is_classification_preset(data: Any) -> bool:
    """Classification presets name an image data set; the folder also holds the TOFU presets."""
    from dualoptim.data import DATASETS

    return (
        isinstance(data, dict)
        and isinstance(data.get("data"), dict)
        and data["data"].get("dataset") in DATASETS
    )


def preset_names() -> list[str]:
    """The image-classification presets shipped in ``dualoptim/configs``."""
    import yaml

    return sorted(
        p.stem
        for p in PRESET_DIR.glob("*.yaml")
        if _is_classification_preset(yaml.safe_load(p.read_text(encoding="utf-8")))
    )


def read_preset(name_or_path: str) -> dict[str, Any]:
    """The raw mapping of a preset: a name from ``dualoptim/configs`` or a YAML file path."""
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        if name_or_path not in preset_names():
            raise ValueError(
                f"unknown preset {name_or_path!r}; valid: {', '.join(preset_names())} or a YAML file"
            )
        path = PRESET_DIR / f"{name_or_path}.yaml"
    elif not path.is_file():
        raise ValueError(f"preset file does not exist: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"preset {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"preset {path} must be a YAML mapping")
    return data


def load_preset(*names_or_paths: str, base: BenchConfig | None = None) -> BenchConfig:
    """The defaults (or ``base``) overridden by each preset in order; later presets win key by key."""
    config = base if base is not None else BenchConfig()
    for preset in names_or_paths:
        config = config_from_dict(BenchConfig, read_preset(preset), base=config)
    return config
