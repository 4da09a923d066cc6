"""The multi-seed image-classification benchmark: original, retrained references, unlearning runs, results.json.

Layout of an output folder::

    config.yaml         the effective configuration
    runs/*.json         one file per finished run, written atomically (an interrupted benchmark resumes)
    results.json        the aggregate (SPEC §6), from which table.md and the plots are generated

Trained originals and retrains are cached under ``cache_dir/vision`` by a hash of everything that
determines them, so reruns and other output folders reuse them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dualoptim.benchmark.config import BenchConfig, config_to_dict
from dualoptim.data import ImageData, Split, load_dataset, make_split, read_indices
from dualoptim.io import read_json, write_json_atomic, write_text_atomic
from dualoptim.methods import METHODS, Method, build_method
from dualoptim.metrics.aggregate import METRICS, mean_std, summarize
from dualoptim.metrics.classification import evaluate
from dualoptim.models import build_model, load_checkpoint, save_checkpoint, train_classifier
from dualoptim.paths import default_cache_dir
from dualoptim.unlearn import STRATEGIES, NonFiniteLoss, OptimizerSettings, Schedule, unlearn

__all__ = ["Benchmark", "environment", "run_benchmark", "validate"]

_CACHE_VERSION = 1
_GRAD_BINS = 100


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def validate(config: BenchConfig) -> None:
    """Fail early, with the bad value named, before any training starts."""
    for name in config.methods:
        METHODS.get(name)
        if METHODS.get(name).from_scratch:
            raise ValueError(
                f"method {name!r} is the retrained reference every run is compared with; do not list it"
            )
    for name in config.optimizers:
        STRATEGIES.get(name)
    from dualoptim.data import DATASETS
    from dualoptim.models import MODELS

    DATASETS.get(config.data.dataset)
    MODELS.get(config.model.arch)
    resolve_device(config.device)
    if not config.seeds:
        raise ValueError("no seeds given")
    if len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"duplicated seeds: {config.seeds}")
    for name in config.unlearn.methods:
        METHODS.get(name)
    for name in config.methods:
        build_method(name, _method_config(config, name).options)
        for strategy in config.optimizers:
            settings_for(config, name, strategy)
            schedule_for(config, name)


def _method_config(config: BenchConfig, name: str):
    from dualoptim.benchmark.config import MethodConfig

    return config.unlearn.methods.get(name, MethodConfig())


def schedule_for(config: BenchConfig, method: str) -> Schedule:
    """Global schedule < the method's published defaults < per-method config."""
    resolved = dataclasses.asdict(config.unlearn.schedule)
    resolved.update(METHODS.get(method).schedule_defaults)
    resolved.update(
        {
            k: v
            for k, v in dataclasses.asdict(_method_config(config, method).schedule).items()
            if v is not None
        }
    )
    for key in ("forget_steps", "retain_steps"):
        value = resolved[key]
        if isinstance(value, str):
            if value != "pass":
                raise ValueError(f"{key} of {method} must be an integer or 'pass', got {value!r}")
            resolved[key] = None
    return Schedule(**resolved)


def settings_for(config: BenchConfig, method: str, strategy: str) -> OptimizerSettings:
    """Learning rates (per-method override < per-strategy default) and the shared optimizer settings."""
    optim = config.unlearn.optim
    overrides = _method_config(config, method)
    rates = {}
    fallback = STRATEGIES.get(strategy).rates_from
    for side, defaults, specific in (
        ("forget_lr", optim.forget_lr, overrides.forget_lr),
        ("retain_lr", optim.retain_lr, overrides.retain_lr),
    ):
        value = specific.get(strategy, defaults.get(strategy))
        if value is None and fallback is not None:
            value = specific.get(fallback, defaults.get(fallback))
        if value is None:
            raise ValueError(f"no {side} for strategy {strategy!r} (set unlearn.optim.{side}.{strategy})")
        if not value > 0:
            raise ValueError(f"{side} of {method}/{strategy} must be > 0, got {value}")
        rates[side] = value
    return OptimizerSettings(
        **rates,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
        forget_betas=tuple(optim.forget_betas),
        forget_weight_decay=optim.forget_weight_decay,
        plus_betas=tuple(optim.plus_betas),
        plus_weight_decay=optim.plus_weight_decay,
    )


def environment(command: list[str] | None = None) -> dict[str, Any]:
    """Command, commit, torch version and hardware, stored with every result."""
    root = Path(__file__).resolve().parents[3]
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "command": " ".join(command if command is not None else ["dualoptim", *sys.argv[1:]]),
        "commit": commit,
        "uncommitted_changes": dirty,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@dataclass
class SeedData:
    """One seed's forget/retain split as tensors, and the fixed subsets used for curve evaluations."""

    split: Split
    forget: tuple[torch.Tensor, torch.Tensor]
    retain: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    curve_sets: tuple[tuple, tuple, tuple]


class Benchmark:
    """Everything a benchmark needs, built once: data, original model, cached retrains."""

    def __init__(
        self, config: BenchConfig, *, progress_bar: bool = True, log: Callable[[str], None] = print
    ) -> None:
        validate(config)
        self.config = config
        self.progress_bar = progress_bar
        self.log = log
        self.cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        self.device = resolve_device(config.device)
        self.data = self._load_data()
        for seed in config.seeds:
            self.seed_data(seed)  # a bad forget set fails here, before any training
        self.original, self.original_meta = self._original()

    # -- data and models ------------------------------------------------------------------------
    def _load_data(self) -> ImageData:
        cfg = self.config.data
        data = load_dataset(cfg.dataset, cfg.root)
        # Fixed subsets (seed 12345), independent of the run seeds, so every run sees the same sets.
        generator = torch.Generator().manual_seed(12345)
        for split, limit in (("train", cfg.train_subset), ("test", cfg.test_subset)):
            if limit is None:
                continue
            x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
            if not 0 < limit <= len(y):
                raise ValueError(f"{split}_subset must be in [1, {len(y)}], got {limit}")
            chosen = torch.sort(torch.randperm(len(y), generator=generator)[:limit]).values
            setattr(data, f"{split}_x", x[chosen])
            setattr(data, f"{split}_y", y[chosen])
        return data

    def new_model(self) -> nn.Module:
        model = build_model(
            self.config.model.arch, self.data.image_shape, self.data.num_classes, self.config.model.width
        )
        return model.to(self.device)

    def _model_key(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "v": _CACHE_VERSION,
            "data": [cfg.data.dataset, cfg.data.train_subset],
            "model": [cfg.model.arch, cfg.model.width],
            "train": dataclasses.asdict(cfg.train),
        }

    def _train_cached(
        self, kind: str, key: dict[str, Any], images: torch.Tensor, labels: torch.Tensor, seed: int
    ) -> tuple[nn.Module, dict]:
        path = self.cache / "vision" / f"{kind}-{_hash(key)}.pt"
        model = self.new_model()
        if path.is_file():
            try:
                return model, load_checkpoint(path, model)
            except ValueError as error:
                self.log(f"retraining: {error}")
        torch.manual_seed(seed)
        model = self.new_model()
        t = self.config.train
        seconds = train_classifier(
            model,
            images,
            labels,
            epochs=t.epochs,
            lr=t.lr,
            momentum=t.momentum,
            weight_decay=t.weight_decay,
            batch_size=t.batch_size,
            seed=seed,
            progress_bar=self.progress_bar,
            description=kind,
        )
        meta = {"seconds": seconds, "key": key, "examples": len(labels)}
        save_checkpoint(path, model, meta)
        return model, meta

    def _original(self) -> tuple[nn.Module, dict]:
        if self.config.model.checkpoint:
            model = self.new_model()
            meta = load_checkpoint(self.config.model.checkpoint, model)
            return model, {**meta, "checkpoint": self.config.model.checkpoint}
        images, labels = self.data.train_x.to(self.device), self.data.train_y.to(self.device)
        return self._train_cached("original", self._model_key(), images, labels, self.config.train.seed)

    def seed_data(self, seed: int) -> SeedData:
        cfg = self.config.data
        indices = read_indices(cfg.forget_indices) if cfg.forget == "indices" else None
        split = make_split(
            self.data.train_y,
            cfg.forget,
            fraction=cfg.forget_fraction,
            count=cfg.forget_count,
            forget_class=cfg.forget_class,
            indices=indices,
            seed=seed,
        )
        # Splits are made on the CPU; the sets the runs use live on the benchmark's device.
        forget = (
            self.data.train_x[split.forget].to(self.device),
            self.data.train_y[split.forget].to(self.device),
        )
        retain = (
            self.data.train_x[split.retain].to(self.device),
            self.data.train_y[split.retain].to(self.device),
        )
        test = (self.data.test_x.to(self.device), self.data.test_y.to(self.device))
        generator = torch.Generator().manual_seed(seed)
        limit = self.config.unlearn.curve_examples

        def sub(pair: tuple) -> tuple:
            if len(pair[1]) <= limit:
                return pair
            chosen = torch.randperm(len(pair[1]), generator=generator)[:limit]
            return pair[0][chosen], pair[1][chosen]

        return SeedData(split, forget, retain, test, (sub(forget), sub(retain), sub(test)))

    def retrain(self, seed: int, seed_data: SeedData) -> tuple[nn.Module, dict]:
        key = {**self._model_key(), "forget": _hash(seed_data.split.forget.tolist()), "seed": seed}
        return self._train_cached("retrain", key, *seed_data.retain, seed)

    def evaluate(self, model: nn.Module, sets: tuple) -> dict[str, float]:
        return evaluate(model, *sets, svc=self.config.unlearn.mia_svc)

    # -- one unlearning run -------------------------------------------------------------------------
    def run_key(self, method: str, strategy: str, seed: int, seed_data: SeedData) -> str:
        cfg = self.config
        return _hash(
            {
                "original": self.original_meta.get("key", self.original_meta.get("checkpoint")),
                "forget": _hash(seed_data.split.forget.tolist()),
                "seed": seed,
                "method": method,
                "options": _method_config(cfg, method).options,
                "strategy": strategy,
                "schedule": dataclasses.asdict(schedule_for(cfg, method)),
                "settings": dataclasses.asdict(settings_for(cfg, method, strategy)),
                "batch_size": cfg.unlearn.batch_size,
                "curve": [cfg.unlearn.curve_points, cfg.unlearn.curve_examples],
                "svc": cfg.unlearn.mia_svc,
                "test": cfg.data.test_subset,
            }
        )

    def run_one(self, method_name: str, strategy: str, seed: int, seed_data: SeedData) -> dict[str, Any]:
        """Unlearn one (method, strategy, seed); a non-finite loss is recorded, not raised."""
        cfg = self.config
        method: Method = build_method(method_name, _method_config(cfg, method_name).options)
        model = copy.deepcopy(self.original)
        record: dict[str, Any] = {"method": method_name, "optimizer": strategy, "seed": seed}
        try:
            log = unlearn(
                model,
                method,
                seed_data.forget,
                seed_data.retain,
                strategy=strategy,
                settings=settings_for(cfg, method_name, strategy),
                schedule=schedule_for(cfg, method_name),
                batch_size=cfg.unlearn.batch_size,
                seed=seed,
                evaluate=lambda m: self.evaluate(m, seed_data.curve_sets),
                eval_points=cfg.unlearn.curve_points,
                progress_bar=self.progress_bar,
            )
        except NonFiniteLoss as error:
            return {**record, "status": "failed", "reason": str(error)}
        metrics = self.evaluate(model, (seed_data.forget, seed_data.retain, seed_data.test))
        return {
            **record,
            "status": "ok",
            "metrics": metrics,
            "seconds": log.seconds,
            "steps": log.steps,
            "curve": log.curve,
            "grad_norms": {
                side: _bin_norms(log.grad_steps[side], log.grad_norms[side], log.steps)
                for side in ("forget", "retain")
            },
        }

    # -- the whole benchmark --------------------------------------------------------------------------
    def run(self, out: str | os.PathLike[str], *, command: list[str] | None = None) -> dict[str, Any]:
        cfg = self.config
        out = Path(out)
        runs_dir = out / "runs"
        env = environment(command)
        import yaml

        write_text_atomic(out / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        total = len(cfg.seeds) * (1 + len(cfg.methods) * len(cfg.optimizers))
        bar = None
        if self.progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="benchmark", unit="run")
        references, runs, originals = {}, [], {}
        for seed in cfg.seeds:
            seed_data = self.seed_data(seed)
            references[seed], originals[seed] = self._reference(seed, seed_data, runs_dir)
            if bar:
                bar.update()
            for method in cfg.methods:
                for strategy in cfg.optimizers:
                    path = runs_dir / f"{_safe(method)}__{_safe(strategy)}__seed{seed}.json"
                    key = self.run_key(method, strategy, seed, seed_data)
                    record = _reuse(path, key)
                    if record is None:
                        record = {**self.run_one(method, strategy, seed, seed_data), "key": key}
                        write_json_atomic(path, record)
                    if record["status"] != "ok":
                        self.log(f"{method}/{strategy} seed {seed} failed: {record['reason']}")
                    runs.append(record)
                    if bar:
                        bar.set_postfix_str(f"{method}/{strategy} seed {seed}")
                        bar.update()
        if bar:
            bar.close()
        results = aggregate(cfg, references, originals, runs, env, self.original_meta)
        write_json_atomic(out / "results.json", results)
        return results

    def _reference(self, seed: int, seed_data: SeedData, runs_dir: Path) -> tuple[dict, dict]:
        """Retrain metrics and the original model's metrics on this seed's split (cached in runs/)."""
        path = runs_dir / f"Retrain__seed{seed}.json"
        key = _hash(
            {
                "original": self.original_meta.get("key", self.original_meta.get("checkpoint")),
                "retrain": self._model_key(),
                "forget": _hash(seed_data.split.forget.tolist()),
                "seed": seed,
                "test": self.config.data.test_subset,
                "svc": self.config.unlearn.mia_svc,
                "curve": self.config.unlearn.curve_examples,
            }
        )
        record = _reuse(path, key)
        if record is None:
            model, meta = self.retrain(seed, seed_data)
            sets = (seed_data.forget, seed_data.retain, seed_data.test)
            record = {
                "key": key,
                "status": "ok",
                "seed": seed,
                "metrics": self.evaluate(model, sets),
                "seconds": meta["seconds"],
                "curve_metrics": self.evaluate(model, seed_data.curve_sets),
                "original": self.evaluate(self.original, sets),
                "forget_size": len(seed_data.split.forget),
                "retain_size": len(seed_data.split.retain),
            }
            write_json_atomic(path, record)
        return record, record["original"]


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; an unavailable device is an error naming it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def _safe(name: str) -> str:
    return name.replace("+", "plus").replace("/", "_")


def _reuse(path: Path, key: str) -> dict | None:
    """A finished run's record when it exists and was made with the same settings."""
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError:
        return None
    return record if record.get("key") == key else None


def _bin_norms(steps: list[int], norms: list[float], total: int) -> list[list[float]]:
    """Mean gradient norm per bin of run progress: [[progress, norm], ...] (at most _GRAD_BINS rows)."""
    if not norms:
        return []
    sums, counts = [0.0] * _GRAD_BINS, [0] * _GRAD_BINS
    for step, norm in zip(steps, norms):
        b = min(_GRAD_BINS - 1, step * _GRAD_BINS // total)
        sums[b] += norm
        counts[b] += 1
    return [[(b + 0.5) / _GRAD_BINS, sums[b] / counts[b]] for b in range(_GRAD_BINS) if counts[b]]


def _series(values: list[list[float]]) -> dict[str, list[float]]:
    """Mean and population std, point by point, of equally long per-seed series."""
    length = min(len(v) for v in values)
    stats = [mean_std([v[i] for v in values]) for i in range(length)]
    return {"mean": [m for m, _ in stats], "std": [s for _, s in stats]}


def aggregate(
    config: BenchConfig, references: dict, originals: dict, runs: list[dict], env: dict, original_meta: dict
) -> dict[str, Any]:
    """results.json (SPEC §6) from the per-run records."""
    seeds = list(config.seeds)
    ref_runs = [references[s]["metrics"] for s in seeds]
    ref_summary = {m: dict(zip(("mean", "std"), mean_std([r[m] for r in ref_runs]))) for m in METRICS}
    reference = {m: ref_summary[m]["mean"] for m in METRICS}
    retrain_seconds = mean_std([references[s]["seconds"] for s in seeds])
    ref_curve = {m: mean_std([references[s]["curve_metrics"][m] for s in seeds])[0] for m in METRICS}
    rows = []
    for method in config.methods:
        for strategy in config.optimizers:
            mine = [r for r in runs if r["method"] == method and r["optimizer"] == strategy]
            ok = [r for r in mine if r["status"] == "ok"]
            row: dict[str, Any] = {
                "method": method,
                "optimizer": strategy,
                "seeds": [r["seed"] for r in ok],
                "failed": [{"seed": r["seed"], "reason": r["reason"]} for r in mine if r["status"] != "ok"],
                "per_seed": [{"seed": r["seed"], **r["metrics"], "seconds": r["seconds"]} for r in ok],
            }
            if ok:
                row.update(summarize([r["metrics"] for r in ok], reference))
                seconds = mean_std([r["seconds"] for r in ok])
                row["seconds"], row["seconds_std"] = seconds
                row["time_ratio"] = seconds[0] / retrain_seconds[0]
                row["steps"] = ok[0]["steps"]
                row["curves"] = {
                    "progress": [p["progress"] for p in ok[0]["curve"]],
                    **{m: _series([[p[m] for p in r["curve"]] for r in ok]) for m in METRICS},
                }
                row["grad_norms"] = {}
                for side in ("forget", "retain"):
                    series = [r["grad_norms"][side] for r in ok]
                    if series and series[0]:
                        row["grad_norms"][side] = {
                            "progress": [p for p, _ in series[0]],
                            **_series([[n for _, n in s] for s in series]),
                        }
            else:
                row.update({"metrics": None, "Gap": None, "Std": None, "seconds": None})
            rows.append(row)
    timed = [r["seconds"] for r in rows if r.get("seconds") is not None]
    return {
        "benchmark": "image-classification",
        "dataset": config.data.dataset,
        "env": env,
        "config": config_to_dict(config),
        "original": {
            "metrics": {
                m: dict(zip(("mean", "std"), mean_std([originals[s][m] for s in seeds]))) for m in METRICS
            },
            "seconds": original_meta.get("seconds"),
        },
        "retrain": {
            "metrics": ref_summary,
            "Std": sum(ref_summary[m]["std"] for m in METRICS) / len(METRICS),
            "seconds": retrain_seconds[0],
            "seconds_std": retrain_seconds[1],
            "per_seed": [
                {"seed": s, **references[s]["metrics"], "seconds": references[s]["seconds"]} for s in seeds
            ],
            "curve_reference": ref_curve,
            "forget_size": references[seeds[0]]["forget_size"],
            "retain_size": references[seeds[0]]["retain_size"],
        },
        "rows": rows,
        "time_ratio": (sum(timed) / len(timed)) / retrain_seconds[0] if timed else None,
    }


def run_benchmark(
    config: BenchConfig,
    out: str | os.PathLike[str],
    *,
    progress_bar: bool = True,
    command: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the benchmark of ``config`` into ``out`` and return results.json's content."""
    return Benchmark(config, progress_bar=progress_bar, log=log).run(out, command=command)
