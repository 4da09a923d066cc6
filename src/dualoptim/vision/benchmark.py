"""The multi-seed image-classification benchmark: original, retrained references, unlearning runs.

Layout of an output folder (the run store of :mod:`dualoptim.runs`)::

    config.yaml                          the effective configuration
    runs/Retrain__seed<S>.json           the retrained reference and the original model on seed S's split
    runs/<method>__<strategy>__seed<S>.json   one finished unlearning run
    results.json                         the results envelope (:mod:`dualoptim.vision.results`)

Each run is resolved once into a frozen :class:`RunSpec` (settings, schedule, key) before any
work starts. Trained originals and retrains are cached under ``cache_dir/vision`` by a hash of
everything that determines them, so reruns and other output folders reuse them.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dualoptim.config import to_dict
from dualoptim.devices import resolve_device, set_threads
from dualoptim.errors import NonFiniteLoss
from dualoptim.paths import default_cache_dir
from dualoptim.runs import RunStore, environment, open_output, slug, stable_hash
from dualoptim.schedule import Schedule
from dualoptim.strategies import STRATEGIES, OptimizerSettings, check_strategy, settings_key
from dualoptim.vision.config import MethodConfig, VisionConfig
from dualoptim.vision.datasets import DATASETS, ImageData, load_dataset
from dualoptim.vision.loop import unlearn
from dualoptim.vision.methods import METHODS, build_method
from dualoptim.vision.metrics import evaluate
from dualoptim.vision.models import MODELS, build_model
from dualoptim.vision.splits import Split, make_split, read_indices
from dualoptim.vision.training import (
    LR_SCHEDULES,
    TRAIN_OPTIMIZERS,
    load_checkpoint,
    save_checkpoint,
    train_classifier,
)
from dualoptim.vision.types import Batch

__all__ = [
    "Benchmark",
    "RunSpec",
    "resolve_schedule",
    "resolve_settings",
    "run_benchmark",
    "run_parallel",
    "run_submitit",
    "validate",
]

_CACHE_VERSION = 1
#: where the runs of a benchmark with jobs > 1 are computed
EXECUTORS = ("processes", "submitit")
_GRAD_BINS = 100
#: training options added after the first cached models: they enter a model's cache key only when
#: they differ from these defaults, so models trained before they existed keep their keys.
_LATER_TRAIN_OPTIONS = {"optimizer": "sgd", "lr_schedule": "cosine", "milestones": [], "gamma": 0.1, "augment": False}


@dataclass(frozen=True)
class RunSpec:
    """One unlearning run, resolved once: what runs, with which settings, and the key of its record."""

    method: str
    strategy: str
    seed: int
    options: dict[str, Any]
    settings: OptimizerSettings
    schedule: Schedule
    batch_size: int
    #: evaluations along the run (the stability curve)
    curve_points: int
    #: the record's name in the run store
    name: str
    #: hash of everything that determines the run's result
    key: str


def _method_config(config: VisionConfig, method: str) -> MethodConfig:
    return config.unlearn.methods.get(method, MethodConfig())


def resolve_schedule(config: VisionConfig, method: str) -> Schedule:
    """Global schedule < the method's published defaults < the per-method config."""
    resolved = dataclasses.asdict(config.unlearn.schedule)
    resolved.update(METHODS.get(method).schedule_defaults)
    specific = dataclasses.asdict(_method_config(config, method).schedule)
    resolved.update({k: v for k, v in specific.items() if v is not None})
    for key in ("forget_steps", "retain_steps"):
        value = resolved[key]
        if isinstance(value, str):
            if value != "pass":
                raise ValueError(f"{key} of {method} must be an integer or 'pass', got {value!r}")
            resolved[key] = None
    return Schedule(**resolved)


def resolve_settings(config: VisionConfig, method: str, strategy: str) -> OptimizerSettings:
    """Learning rates (per-method override < per-strategy default < the twin's for 8-bit) and the rest."""
    optim = config.unlearn.optim
    overrides = _method_config(config, method)
    twin = STRATEGIES.get(strategy).rates_from
    rates = {}
    for side, defaults, specific in (
        ("forget_lr", optim.forget_lr, overrides.forget_lr),
        ("retain_lr", optim.retain_lr, overrides.retain_lr),
    ):
        value = specific.get(strategy, defaults.get(strategy))
        if value is None and twin is not None:
            value = specific.get(twin, defaults.get(twin))
        if value is None:
            raise ValueError(f"no {side} for strategy {strategy!r} (set unlearn.optim.{side}.{strategy})")
        if not value > 0:
            raise ValueError(f"{side} of {method}/{strategy} must be > 0, got {value}")
        rates[side] = value
    return OptimizerSettings(
        **rates,
        family=optim.family,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
        forget_betas=tuple(optim.forget_betas),
        forget_weight_decay=optim.forget_weight_decay,
        plus_betas=tuple(optim.plus_betas),
        plus_weight_decay=optim.plus_weight_decay,
    )


def _check_minimum(values: dict[str, Any], minimum: int) -> None:
    for key, value in values.items():
        if value is not None and value < minimum:
            raise ValueError(f"{key} must be >= {minimum}, got {value}")


def validate(config: VisionConfig) -> None:
    """Fail early, with the bad value named, before any training starts."""
    unlearnable = [n for n in METHODS if not METHODS.get(n).from_scratch]
    for name in config.methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; valid: {', '.join(unlearnable)}")
        if METHODS.get(name).from_scratch:
            raise ValueError(
                f"method {name!r} is the retrained reference every run is compared with; do not list it"
            )
    for name in config.strategies:
        STRATEGIES.get(name)
    DATASETS.get(config.data.dataset)
    MODELS.get(config.model.arch)
    resolve_device(config.device)
    if not config.seeds:
        raise ValueError("no seeds given")
    if len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"duplicated seeds: {config.seeds}")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {config.threads}")
    if isinstance(config.jobs, bool) or not isinstance(config.jobs, int) or config.jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {config.jobs!r}")
    if config.executor not in EXECUTORS:
        raise ValueError(f"unknown executor {config.executor!r}; valid: {', '.join(EXECUTORS)}")
    if not 0.0 <= config.data.validation_fraction < 1.0:
        raise ValueError(f"data.validation_fraction must be in [0, 1), got {config.data.validation_fraction}")
    if config.train.optimizer not in TRAIN_OPTIMIZERS:
        raise ValueError(f"unknown train.optimizer {config.train.optimizer!r}; valid: {', '.join(TRAIN_OPTIMIZERS)}")
    if config.train.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown train.lr_schedule {config.train.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
    if config.train.lr_schedule == "step" and any(not 0 < m < config.train.epochs for m in config.train.milestones):
        raise ValueError(
            f"train.milestones must be epochs in [1, {config.train.epochs - 1}], got {config.train.milestones}"
        )
    if config.model.weights is not None and not getattr(MODELS.get(config.model.arch), "pretrained", False):
        raise ValueError(f"model {config.model.arch!r} has no pre-trained weights (model.weights={config.model.weights!r})")
    t, u = config.train, config.unlearn
    _check_minimum({"train.epochs": t.epochs, "train.batch_size": t.batch_size, "model.width": config.model.width,
                    "unlearn.batch_size": u.batch_size, "unlearn.curve_examples": u.curve_examples}, 1)  # fmt: skip
    _check_minimum({"unlearn.curve_points": u.curve_points}, 0)
    for name in config.unlearn.methods:
        METHODS.get(name)
    for name in config.methods:
        build_method(name, _method_config(config, name).options)
        resolve_schedule(config, name)
        for strategy in config.strategies:
            check_strategy(strategy, resolve_settings(config, name, strategy))


@dataclass
class SeedData:
    """One seed's forget/retain split as tensors, and the fixed subsets used for curve evaluations."""

    split: Split
    forget: Batch
    retain: Batch
    test: Batch
    curve_sets: tuple[Batch, Batch, Batch]

    @property
    def sets(self) -> tuple[Batch, Batch, Batch]:
        return self.forget, self.retain, self.test


class Benchmark:
    """Everything a benchmark needs, built once: data, the original model, cached retrains."""

    def __init__(
        self,
        config: VisionConfig,
        *,
        progress_bar: bool = True,
        log: Callable[[str], None] = print,
        command: list[str] | None = None,
    ) -> None:
        validate(config)
        set_threads(config.threads)
        self.config = config
        self.started = environment(command)  # provenance of the code that runs, taken now
        self.progress_bar = progress_bar
        self.log = log
        self.cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        self.device = resolve_device(config.device)
        self.data = self._load_data()
        # Splits are indices, made for every seed now so that a bad forget set fails before any
        # training; the tensors of one seed at a time live on the device (seed_data).
        self.splits = {seed: self._split(seed) for seed in config.seeds}
        self._current: tuple[int, SeedData] | None = None
        self.original, self.original_meta = self._original()

    # -- data and models ----------------------------------------------------------------------------
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
        if cfg.validation_fraction:
            # The papers' code holds out 10% of each class (a fixed draw) before the forget set is
            # chosen, so CIFAR-10's 50,000 images leave 45,000: 4,500 forget, 40,500 retain.
            kept = _without_validation(data.train_y, cfg.validation_fraction, generator)
            data.train_x, data.train_y = data.train_x[kept], data.train_y[kept]
        return data

    def new_model(self) -> nn.Module:
        cfg = self.config.model
        model = build_model(cfg.arch, self.data.image_shape, self.data.num_classes, cfg.width, cfg.weights)
        return model.to(self.device)

    def _model_key(self) -> dict[str, Any]:
        cfg = self.config
        train = dataclasses.asdict(cfg.train)
        for name, default in _LATER_TRAIN_OPTIONS.items():
            if train[name] == default:
                del train[name]
        data: list[Any] = [cfg.data.dataset, cfg.data.train_subset]
        if cfg.data.validation_fraction:
            data.append({"validation_fraction": cfg.data.validation_fraction})
        model: list[Any] = [cfg.model.arch, cfg.model.width]
        if cfg.model.weights is not None:
            model.append({"weights": cfg.model.weights})
        return {"v": _CACHE_VERSION, "data": data, "model": model, "train": train}

    def _train_cached(
        self, kind: str, key: dict[str, Any], images: torch.Tensor, labels: torch.Tensor, seed: int
    ) -> tuple[nn.Module, dict]:
        path = self.cache / "vision" / f"{kind}-{stable_hash(key)}.pt"
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
            model, images, labels, epochs=t.epochs, lr=t.lr, momentum=t.momentum,
            weight_decay=t.weight_decay, batch_size=t.batch_size, seed=seed, optimizer=t.optimizer,
            lr_schedule=t.lr_schedule, milestones=t.milestones, gamma=t.gamma, augment=t.augment,
            progress_bar=self.progress_bar, description=kind,
        )  # fmt: skip
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

    def _split(self, seed: int) -> Split:
        cfg = self.config.data
        indices = read_indices(cfg.forget_indices) if cfg.forget == "indices" else None
        return make_split(
            self.data.train_y, cfg.forget, fraction=cfg.forget_fraction, count=cfg.forget_count,
            forget_class=cfg.forget_class, indices=indices, seed=seed,
        )  # fmt: skip

    def seed_data(self, seed: int) -> SeedData:
        """Seed ``seed``'s sets on the benchmark's device (kept until another seed is asked for)."""
        if self._current is None or self._current[0] != seed:
            self._current = (seed, self._seed_data(seed))
        return self._current[1]

    def _seed_data(self, seed: int) -> SeedData:
        split = self.splits[seed]
        # Splits are made on the CPU; the sets the runs use live on the benchmark's device.
        x, y = self.data.train_x, self.data.train_y
        forget = (x[split.forget].to(self.device), y[split.forget].to(self.device))
        retain = (x[split.retain].to(self.device), y[split.retain].to(self.device))
        test_x, test_y = self.data.test_x, self.data.test_y
        if self.config.data.forget == "class":
            # Class-wise forgetting: TA is the accuracy on the classes that remain (the papers'
            # code drops the forgotten class from the test set).
            kept = test_y != self.config.data.forget_class
            test_x, test_y = test_x[kept], test_y[kept]
        test = (test_x.to(self.device), test_y.to(self.device))
        generator = torch.Generator().manual_seed(seed)
        limit = self.config.unlearn.curve_examples

        def sub(pair: Batch) -> Batch:
            if len(pair[1]) <= limit:
                return pair
            chosen = torch.randperm(len(pair[1]), generator=generator)[:limit]
            return pair[0][chosen], pair[1][chosen]

        return SeedData(split, forget, retain, test, (sub(forget), sub(retain), sub(test)))

    def evaluate(self, model: nn.Module, sets: tuple[Batch, Batch, Batch]) -> dict[str, float]:
        return evaluate(model, *sets, svc=self.config.unlearn.mia_svc)

    def _test_id(self) -> Any:
        """What identifies the test set of the runs' keys (unchanged from before class-wise TA existed)."""
        cfg = self.config.data
        if cfg.forget == "class":
            return [cfg.test_subset, {"without_class": cfg.forget_class}]
        return cfg.test_subset

    # -- the runs, resolved once ------------------------------------------------------------------------
    def _original_id(self) -> Any:
        """What identifies the original model: its training key, or the content of a given checkpoint."""
        if "key" in self.original_meta:
            return self.original_meta["key"]
        import hashlib

        digest = hashlib.sha256(Path(self.config.model.checkpoint).read_bytes()).hexdigest()
        return {"checkpoint": self.config.model.checkpoint, "sha256": digest}

    def plan(self, seed: int) -> list[RunSpec]:
        """Every (method, strategy) run of ``seed``, each resolved into a frozen :class:`RunSpec`."""
        cfg = self.config
        specs = []
        for method in cfg.methods:
            options = dict(_method_config(cfg, method).options)
            schedule = resolve_schedule(cfg, method)
            for strategy in cfg.strategies:
                settings = resolve_settings(cfg, method, strategy)
                key = stable_hash(
                    {
                        "original": self._original_id(),
                        "forget": _forget_hash(self.splits[seed]),
                        "seed": seed,
                        "method": method,
                        "options": options,
                        "strategy": strategy,
                        "schedule": dataclasses.asdict(schedule),
                        "settings": settings_key(settings),
                        "batch_size": cfg.unlearn.batch_size,
                        "curve": [cfg.unlearn.curve_points, cfg.unlearn.curve_examples],
                        "svc": cfg.unlearn.mia_svc,
                        "test": self._test_id(),
                    }
                )
                name = f"{slug(method)}__{slug(strategy)}__seed{seed}"
                specs.append(RunSpec(method, strategy, seed, options, settings, schedule, cfg.unlearn.batch_size,
                                     cfg.unlearn.curve_points, name, key))  # fmt: skip
        return specs

    def run_one(self, spec: RunSpec) -> dict[str, Any]:
        """Unlearn one resolved run; a non-finite loss is recorded as the run's failure, not raised."""
        data = self.seed_data(spec.seed)
        method = build_method(spec.method, spec.options)
        model = copy.deepcopy(self.original)
        record: dict[str, Any] = {"method": spec.method, "strategy": spec.strategy, "seed": spec.seed}
        try:
            log = unlearn(
                model, method, data.forget, data.retain, strategy=spec.strategy, settings=spec.settings,
                schedule=spec.schedule, batch_size=spec.batch_size, seed=spec.seed,
                evaluate=lambda m: self.evaluate(m, data.curve_sets),
                eval_points=spec.curve_points, progress_bar=self.progress_bar,
            )  # fmt: skip
        except NonFiniteLoss as error:
            return {**record, "status": "failed", "reason": str(error)}
        return {
            **record,
            "status": "ok",
            "metrics": self.evaluate(model, data.sets),
            "seconds": log.seconds,
            "steps": log.steps,
            "curve": log.curve,
            "grad_norms": {
                side: _bin_norms(log.grad_steps[side], log.grad_norms[side], log.steps)
                for side in ("forget", "retain")
            },
        }

    def reference_key(self, seed: int) -> str:
        """The key of seed ``seed``'s reference record: everything that determines it."""
        return stable_hash(
            {
                "original": self._original_id(),
                "retrain": self._model_key(),
                "forget": _forget_hash(self.splits[seed]),
                "seed": seed,
                "test": self._test_id(),
                "svc": self.config.unlearn.mia_svc,
                "curve": self.config.unlearn.curve_examples,
            }
        )

    def compute_reference(self, seed: int) -> dict[str, Any]:
        """Retrain on ``seed``'s retain set (cached) and measure it and the original on ``seed``'s sets."""
        data = self.seed_data(seed)
        retrain_key = {**self._model_key(), "forget": _forget_hash(data.split), "seed": seed}
        model, meta = self._train_cached("retrain", retrain_key, *data.retain, seed)
        return {
            "status": "ok",
            "seed": seed,
            "metrics": self.evaluate(model, data.sets),
            "seconds": meta["seconds"],
            "curve_metrics": self.evaluate(model, data.curve_sets),
            "original": self.evaluate(self.original, data.sets),
            "forget_size": len(data.split.forget),
            "retain_size": len(data.split.retain),
        }

    def reference(self, seed: int, store: RunStore) -> dict[str, Any]:
        """The retrained reference's and the original model's metrics on ``seed``'s split (stored)."""
        return store.get_or_run(f"Retrain__seed{seed}", self.reference_key(seed), lambda: self.compute_reference(seed))[0]

    # -- the whole benchmark ------------------------------------------------------------------------------
    def run(self, out: str | os.PathLike[str]) -> dict[str, Any]:
        """Run (or resume) every run into ``out``; return and write results.json."""
        from dualoptim.io import write_json_atomic
        from dualoptim.vision.results import build_results

        cfg = self.config
        out = Path(out)
        started = time.perf_counter()
        env = self.started
        store = open_output(out, to_dict(cfg), env)
        plans = {seed: self.plan(seed) for seed in cfg.seeds}
        bar = None
        if self.progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(1 + len(p) for p in plans.values()), desc="benchmark", unit="run")
        if cfg.jobs > 1:
            # Workers compute what the store lacks; the loop below then reads every record.
            tasks = [(f"Retrain__seed{seed}", self.reference_key(seed), ("reference", seed)) for seed in plans]
            tasks += [(spec.name, spec.key, ("run", spec)) for specs in plans.values() for spec in specs]
            on_done = bar.update if bar else None
            if cfg.executor == "submitit":
                run_submitit(cfg, store, tasks, cfg.jobs, out / "submitit", on_done=on_done)
            else:
                run_parallel(cfg, store, tasks, cfg.jobs, on_done=on_done)
        references, runs = {}, []
        for seed, specs in plans.items():
            references[seed] = self.reference(seed, store)
            if bar and cfg.jobs == 1:
                bar.update()
            for spec in specs:
                record, _ = store.get_or_run(spec.name, spec.key, lambda spec=spec: self.run_one(spec))
                if record["status"] != "ok":
                    self.log(f"{spec.method}/{spec.strategy} seed {seed} failed: {record['reason']}")
                runs.append(record)
                if bar and cfg.jobs == 1:
                    bar.set_postfix_str(f"{spec.method}/{spec.strategy} seed {seed}")
                    bar.update()
        if bar:
            bar.close()
        results = build_results(
            cfg, references, runs, env, self.original_meta, seconds=time.perf_counter() - started
        )
        write_json_atomic(out / "results.json", results)
        return results


# -- parallel runs ------------------------------------------------------------------------------------
#: the benchmark of this worker process (built once per worker by _start_worker)
_WORKER: Benchmark | None = None
#: a pool whose workers died is restarted this many times before the benchmark gives up
_MAX_RESTARTS = 3


def _start_worker(config: VisionConfig, counter: Any, jobs: int) -> None:
    """Build this process's benchmark: data, and the original model from the cache the parent filled."""
    global _WORKER
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    config = copy.deepcopy(config)
    device = resolve_device(config.device)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        config.device = f"cuda:{index % torch.cuda.device_count()}"  # one GPU per worker, round robin
    if config.threads is None:
        config.threads = max(1, (os.cpu_count() or 1) // jobs)  # the CPU cores shared, not oversubscribed
    _WORKER = Benchmark(config, progress_bar=False, log=lambda _: None)


def _work(task: tuple[str, Any]) -> dict[str, Any]:
    kind, payload = task
    assert _WORKER is not None, "worker not started"
    return _WORKER.compute_reference(payload) if kind == "reference" else _WORKER.run_one(payload)


def _pending(tasks, store, on_done):
    """The tasks whose record the store lacks; ``on_done`` is called once for every one it has."""
    pending = []
    for name, key, task in tasks:
        if store.get(name, key) is None:
            pending.append((name, key, task))
        elif on_done:
            on_done()
    return pending


def run_parallel(
    config: VisionConfig,
    store: RunStore,
    tasks: list[tuple[str, str, tuple[str, Any]]],
    jobs: int,
    *,
    on_done: Callable[[], Any] | None = None,
) -> int:
    """Compute every ``(name, key, task)`` the store lacks in ``jobs`` worker processes; return how many.

    Each record is stored by this process the moment its worker returns it, so an interruption
    loses only the runs in flight. A worker that dies (killed, out of memory) breaks the pool:
    the runs it and its siblings had in flight go back to the queue and a new pool takes over,
    up to ``_MAX_RESTARTS`` times. Workers are spawned (not forked), which CUDA requires.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = _pending(tasks, store, on_done)
    computed, restarts = 0, 0
    context = multiprocessing.get_context("spawn")
    while pending:
        counter = context.Value("i", 0)
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                 initargs=(config, counter, jobs)) as pool:  # fmt: skip
            futures = {pool.submit(_work, task): (name, key, task) for name, key, task in pending}
            broken = False
            while futures and not broken:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    name, key, task = futures.pop(future)
                    try:
                        record = future.result()
                    except BrokenProcessPool:
                        broken = True
                        futures[future] = (name, key, task)  # lost with its worker: run it again
                        continue
                    store.put(name, key, record)
                    pending.remove((name, key, task))
                    computed += 1
                    if on_done:
                        on_done()
        if broken:
            restarts += 1
            if restarts > _MAX_RESTARTS:
                raise RuntimeError(
                    f"worker processes died {restarts} times; the {computed} finished runs are stored, "
                    "rerun the same command to resume"
                )
    return computed


def _run_chunk(config: VisionConfig, runs: str, provenance: dict[str, Any] | None, chunk: list) -> int:
    """One cluster job: build the benchmark, then compute and store each run of ``chunk`` the store lacks."""
    benchmark = Benchmark(config, progress_bar=False, log=lambda _: None)
    store = RunStore(runs, provenance)
    for name, key, (kind, payload) in chunk:
        if store.get(name, key) is None:
            record = benchmark.compute_reference(payload) if kind == "reference" else benchmark.run_one(payload)
            store.put(name, key, record)
    return len(chunk)


def run_submitit(
    config: VisionConfig,
    store: RunStore,
    tasks: list[tuple[str, str, tuple[str, Any]]],
    jobs: int,
    folder: Path,
    *,
    on_done: Callable[[], Any] | None = None,
) -> int:
    """Compute the runs the store lacks in ``jobs`` cluster jobs through submitit; return how many.

    submitit submits to SLURM where there is one and runs local subprocesses elsewhere
    (``config.executor_options`` go to ``update_parameters``). The runs are dealt round robin into
    the jobs; each job stores every record itself the moment it is finished (the output folder
    must be on a file system the jobs share), so a lost job costs only the runs it had not
    finished, and rerunning the command computes those and nothing else.
    """
    try:
        import submitit
    except ImportError:
        raise ValueError("executor 'submitit' needs submitit (pip install 'dualoptim[cluster]')") from None
    pending = _pending(tasks, store, on_done)
    if not pending:
        return 0
    options = dict(config.executor_options)
    # "cluster" chooses the backend (slurm, local, debug) and goes to the constructor.
    executor = submitit.AutoExecutor(folder=str(folder), cluster=options.pop("cluster", None))
    executor.update_parameters(**options)
    chunks = [pending[i::jobs] for i in range(min(jobs, len(pending)))]
    submitted = [executor.submit(_run_chunk, config, str(store.folder), store.provenance, c) for c in chunks]
    lost = []
    for job, chunk in zip(submitted, chunks):
        try:
            job.result()
        except Exception as error:  # the job failed or was killed: its finished runs are stored
            lost.append(f"job {job.job_id}: {str(error).strip().splitlines()[-1][:200] if str(error).strip() else type(error).__name__}")
        if on_done:
            for _ in chunk:
                on_done()
    missing = [name for name, key, _ in pending if store.get(name, key) is None]
    if missing:
        raise RuntimeError(
            f"{len(missing)} runs were not finished ({'; '.join(lost) or 'no job reported an error'}); "
            "the finished runs are stored, rerun the same command to resume"
        )
    return len(pending)


def _without_validation(labels: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of the training examples kept after holding out ``fraction`` of each class."""
    held = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        count = int(fraction * len(members))  # int(), as the papers' code: 10% of 5,000 is 500
        held.append(members[torch.randperm(len(members), generator=generator)[:count]])
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[torch.cat(held)] = False
    return torch.nonzero(keep).flatten()


def _forget_hash(split: Split) -> str:
    return stable_hash(split.forget.tolist())


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


def run_benchmark(
    config: VisionConfig,
    out: str | os.PathLike[str],
    *,
    progress_bar: bool = True,
    command: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the benchmark of ``config`` into ``out`` and return results.json's content."""
    return Benchmark(config, progress_bar=progress_bar, log=log, command=command).run(out)
