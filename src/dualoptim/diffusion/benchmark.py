"""The class-wise diffusion unlearning benchmark: one original model, one run per (class, method, strategy, seed).

Layout of an output folder (the run store of :mod:`dualoptim.runs`)::

    config.yaml                                   the effective configuration
    runs/original/seed<S>.json                    the do-nothing control of seed S: the original model's samples
                                                  (per-class accuracy) scored like every run of that seed
    runs/class<C>/<method>__<strategy>__seed<S>.json   one finished unlearning run (metrics and its grid's pixels)
    results.json                                  the results envelope (:mod:`dualoptim.diffusion.results`)

The original denoiser and the classifier are trained once and cached (:mod:`.originals`). A seed
is a whole replicate: it decides the run's randomness (batches, timesteps, noise) *and* the bank of
starting noises its images are grown from. Within a seed, every model (the original and each
unlearned one) is sampled from the same bank, so grids and metrics compare image for image, and
the original scored on each seed's bank is the do-nothing control whose spread over seeds is the
noise a run must beat (``docs/design.md`` §4.5).
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dualoptim.config import to_dict
from dualoptim.devices import resolve_device, set_threads
from dualoptim.diffusion.config import DiffusionConfig, MethodConfig
from dualoptim.diffusion.data import DATASETS, LabelledImages, load_images, resolve_class
from dualoptim.diffusion.loop import unlearn
from dualoptim.diffusion.methods import METHODS, Context, build_method
from dualoptim.diffusion.metrics import (
    FID_WEIGHTS_FILE,
    class_accuracy,
    classifier_features,
    forget_accuracy,
    frechet_distance,
    inception_fid,
)
from dualoptim.diffusion.originals import build_diffusion, load_or_train_classifier, load_or_train_denoiser
from dualoptim.errors import NonFiniteLoss
from dualoptim.paths import default_cache_dir
from dualoptim.runs import environment, open_output, slug, stable_hash
from dualoptim.strategies import STRATEGIES, OptimizerSettings, check_strategy, settings_key

__all__ = ["Benchmark", "RunSpec", "distance_name", "resolve_settings", "run_benchmark", "validate"]

#: seed of the real reference images and of the training subset; the noise banks derive from it and the run seed
_EVAL_SEED = 12345


@dataclass(frozen=True)
class RunSpec:
    """One unlearning run, resolved once: what runs, with which settings, and the key of its record."""

    forget_class: int
    method: str
    strategy: str
    seed: int
    options: dict[str, Any]
    settings: OptimizerSettings
    iterations: int
    name: str
    key: str


def _method_config(config: DiffusionConfig, method: str) -> MethodConfig:
    return config.unlearn.methods.get(method, MethodConfig())


def resolve_options(config: DiffusionConfig, method: str, strategy: str) -> dict[str, Any]:
    """Method options: the method's < the strategy-specific ones (SFRon+DualOptim's forget_alpha)."""
    specific = _method_config(config, method)
    twin = STRATEGIES.get(strategy).rates_from
    by_strategy = specific.strategy_options.get(strategy, specific.strategy_options.get(twin, {}) if twin else {})
    return {**specific.options, **by_strategy}


def resolve_settings(config: DiffusionConfig, method: str, strategy: str) -> OptimizerSettings:
    """Learning rates (per-method override < per-strategy default < the twin's for 8-bit) and Adam settings."""
    optim = config.unlearn.optim
    overrides = _method_config(config, method)
    twin = STRATEGIES.get(strategy).rates_from
    rates = {}
    for side, defaults, specific in (("forget_lr", optim.forget_lr, overrides.forget_lr),
                                     ("retain_lr", optim.retain_lr, overrides.retain_lr)):  # fmt: skip
        value = specific.get(strategy, defaults.get(strategy))
        if value is None and twin is not None:
            value = specific.get(twin, defaults.get(twin))
        if value is None:
            raise ValueError(f"no {side} for strategy {strategy!r} (set unlearn.optim.{side}.{strategy})")
        rates[side] = value
    return OptimizerSettings(
        **rates, family=optim.family, betas=tuple(optim.betas), weight_decay=optim.weight_decay,
        forget_betas=tuple(optim.forget_betas), forget_weight_decay=optim.forget_weight_decay,
        plus_betas=tuple(optim.plus_betas), plus_weight_decay=optim.plus_weight_decay,
        two_rate_alternate=False,  # the reference steps its non-dual runs with one Adam at one rate (§2.5)
    )  # fmt: skip


def distance_name(config: DiffusionConfig) -> str:
    """How the distance column is labelled: FID only when it really is Inception FID."""
    return "FID" if _uses_fid(config) else "FD (classifier features)"


def _uses_fid(config: DiffusionConfig) -> bool:
    e = config.eval
    if e.distance == "fd":
        return False
    if e.distance != "fid":
        raise ValueError(f"unknown eval.distance {e.distance!r}; valid: fd, fid")
    present = e.fid_weights is not None and Path(e.fid_weights).is_file()
    if not present and not e.fid_fallback:
        missing = e.fid_weights or f"(eval.fid_weights unset; torch-fidelity's {FID_WEIGHTS_FILE})"
        raise ValueError(f"FID needs the Inception weights file {missing}, which is missing; "
                         "set eval.fid_fallback=true to report FD (classifier features) instead")  # fmt: skip
    return present


def validate(config: DiffusionConfig) -> None:
    """Fail early, with the bad value named, before any training starts."""
    for name in config.methods:
        METHODS.get(name)
    for name in config.strategies:
        STRATEGIES.get(name)
    for name in config.unlearn.methods:
        METHODS.get(name)
    DATASETS.get(config.data.dataset)
    resolve_device(config.device)
    if config.model.arch not in ("unet", "dit"):
        raise ValueError(f"unknown model.arch {config.model.arch!r}; valid: unet, dit")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {config.seeds}")
    if not config.unlearn.forget_classes:
        raise ValueError("no forget classes given (unlearn.forget_classes)")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {config.threads}")
    u, e, s = config.unlearn, config.eval, config.sample
    for key, value in {"unlearn.iterations": u.iterations, "unlearn.batch_size": u.batch_size,
                       "eval.forget_samples": e.forget_samples, "sample.ddim_steps": s.ddim_steps,
                       "train.steps": config.train.steps, "data.image_size": config.data.image_size}.items():  # fmt: skip
        if value < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")
    if e.kept_samples < 2 or e.real_per_class < 2:
        raise ValueError(f"eval.kept_samples and eval.real_per_class must be >= 2, got {e.kept_samples}, {e.real_per_class}")
    if not 0 <= config.train.cond_drop < 1:
        raise ValueError(f"train.cond_drop must be in [0, 1), got {config.train.cond_drop}")
    _uses_fid(config)
    for name in config.methods:
        for strategy in config.strategies:
            build_method(name, resolve_options(config, name, strategy))
            check_strategy(strategy, resolve_settings(config, name, strategy))


class Benchmark:
    """Everything the runs share, built once: data, classifier, original model, its samples."""

    def __init__(self, config: DiffusionConfig, *, progress_bar: bool = True, log: Callable[[str], None] = print,
                 command: list[str] | None = None) -> None:  # fmt: skip
        validate(config)
        set_threads(config.threads)
        self.config = config
        self.started = environment(command)  # provenance of the code that runs, taken now
        self.progress_bar = progress_bar
        self.log = log
        self.cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        self.device = resolve_device(config.device)
        self.data = self._load_data()
        self.forget_classes = [resolve_class(c, self.data.classes) for c in config.unlearn.forget_classes]
        if len(set(self.forget_classes)) != len(self.forget_classes):
            raise ValueError(f"forget classes repeat: {config.unlearn.forget_classes}")
        self.diffusion = build_diffusion(config)
        self.classifier, self.classifier_meta = load_or_train_classifier(config, self.data, self.cache, self.device)
        self.original, self.original_meta = load_or_train_denoiser(
            config, self.data, self.cache, self.device, progress_bar=progress_bar, log=log
        )
        self.original.eval().requires_grad_(True)
        if self.original.num_classes != self.data.num_classes:
            raise ValueError(f"the model has {self.original.num_classes} classes, the data set {self.data.num_classes}")
        # A latent model (DiT) is trained, unlearned and sampled on VAE latents; metrics see decoded images.
        self.latent = hasattr(self.original, "encode")
        self.train_images = self._encode(self.data.images) if self.latent else self.data.images
        self.real = self._real_reference()
        self._noise: dict[int, dict[int, Tensor]] = {}  # seed -> class -> starting noises
        self._before: dict[int, dict[int, Tensor]] = {}  # seed -> class -> the original's images (pixels)
        self._before_space: dict[int, dict[int, Tensor]] = {}  # the same in the model's space (latents for DiT)

    def _encode(self, images: Tensor) -> Tensor:
        return torch.cat([self.original.encode(images[i : i + 64].to(self.device)).cpu() for i in range(0, len(images), 64)])

    def _load_data(self) -> LabelledImages:
        cfg = self.config.data
        data = load_images(cfg.dataset, cfg.root, cfg.image_size)
        if cfg.train_subset is not None:
            if not 0 < cfg.train_subset <= len(data.labels):
                raise ValueError(f"data.train_subset must be in [1, {len(data.labels)}], got {cfg.train_subset}")
            chosen = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(_EVAL_SEED))
            chosen = torch.sort(chosen[: cfg.train_subset]).values
            data.images, data.labels = data.images[chosen], data.labels[chosen]
        return data

    # -- sampling and metrics -------------------------------------------------------------------------
    def noise_bank(self, seed: int) -> dict[int, Tensor]:
        """Starting noise of every image generated under ``seed``: ``max(forget_samples, kept_samples)`` per
        class, the same for every model of that seed and different from seed to seed."""
        if seed not in self._noise:
            n = max(self.config.eval.forget_samples, self.config.eval.kept_samples)
            shape = tuple(self.train_images.shape[1:])
            # seed 0 keeps the bank of the single-seed benchmark (seeded _EVAL_SEED + c)
            self._noise[seed] = {c: torch.randn((n, *shape), generator=torch.Generator().manual_seed(
                _EVAL_SEED + c + 1_000 * seed)) for c in range(self.data.num_classes)}  # fmt: skip
        return self._noise[seed]

    def _real_reference(self) -> dict[int, Tensor]:
        """``real_per_class`` real training images of every class (a fixed draw): what FD compares against."""
        generator = torch.Generator().manual_seed(_EVAL_SEED)
        feats = {}
        for c in range(self.data.num_classes):
            images = self.data.of_class(c)
            chosen = torch.randperm(len(images), generator=generator)[: self.config.eval.real_per_class]
            feats[c] = images[chosen]
        return feats

    def generate(self, model: nn.Module, per_class: dict[int, int], *, seed: int, raw: bool = False) -> dict[int, Tensor]:
        """``per_class[c]`` images of every class ``c``, grown from the first noises of seed ``seed``'s bank
        (decoded to pixels for a latent model unless ``raw``)."""
        bank = self.noise_bank(seed)
        labels = torch.cat([torch.full((n,), c) for c, n in per_class.items()])
        noise = torch.cat([bank[c][:n] for c, n in per_class.items()])
        s = self.config.sample
        images = self.diffusion.sample(model, labels, noise, steps=s.ddim_steps, guidance=s.guidance, batch_size=s.batch_size)
        if self.latent and not raw:
            images = torch.cat([model.decode(images[i : i + 32].to(self.device)).cpu() for i in range(0, len(images), 32)])
        return dict(zip(per_class, images.split(list(per_class.values()))))

    def before(self, seed: int, raw: bool = False) -> dict[int, Tensor]:
        """The original model's samples on seed ``seed``'s bank: ``max(forget_samples, kept_samples)`` of every
        class (in the model's space, ``raw``, they are SA's replay and Fisher data)."""
        if seed not in self._before:
            n = max(self.config.eval.forget_samples, self.config.eval.kept_samples)
            space = self.generate(self.original, {c: n for c in range(self.data.num_classes)}, seed=seed, raw=True)
            self._before_space[seed] = space
            self._before[seed] = space
            if self.latent:
                self._before[seed] = {c: torch.cat([self.original.decode(x[i : i + 32].to(self.device)).cpu()
                                                    for i in range(0, len(x), 32)]) for c, x in space.items()}  # fmt: skip
        return self._before_space[seed] if raw else self._before[seed]

    def distance(self, generated: dict[int, Tensor], kept: list[int]) -> float:
        """FD (classifier features) or FID of the kept classes' generated images against their real images."""
        fake = torch.cat([generated[c] for c in kept])
        real = torch.cat([self.real[c] for c in kept])
        if _uses_fid(self.config):
            return inception_fid(fake, real, self.config.eval.fid_weights)
        return frechet_distance(classifier_features(self.classifier, fake), classifier_features(self.classifier, real))

    def metrics(self, generated: dict[int, Tensor], forget_class: int) -> dict[str, float]:
        e = self.config.eval
        kept = [c for c in range(self.data.num_classes) if c != forget_class]
        fake = torch.cat([generated[c][: e.kept_samples] for c in kept])
        labels = torch.cat([torch.full((e.kept_samples,), c) for c in kept])
        return {
            "FA": forget_accuracy(self.classifier, generated[forget_class][: e.forget_samples], forget_class),
            "FD": self.distance({c: generated[c][: e.kept_samples] for c in kept}, kept),
            "kept_accuracy": class_accuracy(self.classifier, fake, labels),
        }

    def original_record(self, seed: int) -> dict[str, Any]:
        """The do-nothing control of seed ``seed``: the original model's samples on that seed's bank, scored
        exactly like a run (FA, distance, kept-class accuracy per forgotten class), and the per-class
        accuracy of its samples (is the generator good enough for FA to mean anything?)."""
        before = self.before(seed)
        accuracy = {self.data.classes[c]: class_accuracy(self.classifier, x, torch.full((len(x),), c))
                    for c, x in before.items()}  # fmt: skip
        return {
            "seed": seed,
            "sample_accuracy": accuracy,
            "before": {str(c): self.metrics(before, c) for c in self.forget_classes},
            "pretrain_seconds": self.original_meta.get("seconds"),
            "pretrain_steps": self.config.train.steps if "key" in self.original_meta else None,
            "classifier_seconds": self.classifier_meta.get("seconds"),
        }

    def grid(self, generated: dict[int, Tensor], forget_class: int, seed: int) -> dict[str, Any]:
        """The pixels of a grid (uint8, ``[classes, images, C, H, W]``, base64): the forgotten class and a few
        kept classes, before and after unlearning."""
        e = self.config.eval
        kept = [c for c in range(self.data.num_classes) if c != forget_class][: e.grid_classes]
        classes = [forget_class, *kept]

        def pixels(images: dict[int, Tensor]) -> str:
            rows = torch.stack([images[c][: e.grid_images] for c in classes])
            # uint8 bytes as base64: a record stays a few kB instead of a number per line
            return base64.b64encode(((rows + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy().tobytes()).decode()

        shape = [len(classes), e.grid_images, *self.data.image_shape]
        return {"classes": [self.data.classes[c] for c in classes], "shape": shape,
                "before": pixels(self.before(seed)), "after": pixels(generated)}  # fmt: skip

    # -- the runs -------------------------------------------------------------------------------------
    def specs(self) -> list[RunSpec]:
        cfg = self.config
        original = {"meta_key": self.original_meta.get("key"), "checkpoint": cfg.model.checkpoint}
        shared = {"original": original, "classifier": self.classifier_meta.get("key"), "sample": to_dict(cfg.sample),
                  "eval": to_dict(cfg.eval), "batch_size": cfg.unlearn.batch_size, "cond_drop": cfg.train.cond_drop}  # fmt: skip
        specs = []
        # seed outermost: a benchmark stopped part-way has whole seeds of every (class, method, strategy)
        for seed in cfg.seeds:
            for c in self.forget_classes:
                for method in cfg.methods:
                    for strategy in cfg.strategies:
                        options = resolve_options(cfg, method, strategy)
                        settings = resolve_settings(cfg, method, strategy)
                        iterations = _method_config(cfg, method).iterations or cfg.unlearn.iterations
                        key = stable_hash({**shared, "class": c, "method": method, "strategy": strategy, "seed": seed,
                                           "options": options, "settings": settings_key(settings),
                                           "iterations": iterations})  # fmt: skip
                        name = f"class{c}/{slug(method)}__{slug(strategy)}__seed{seed}"
                        specs.append(RunSpec(c, method, strategy, seed, options, settings, iterations, name, key))
        return specs

    def context(self, forget_class: int, seed: int) -> Context:
        x, y = self.train_images, self.data.labels
        forget = y == forget_class
        generated = self.before(seed, raw=True)
        gen_labels = torch.cat([torch.full((len(v),), c) for c, v in generated.items()])
        return Context(
            diffusion=self.diffusion, forget_class=forget_class, num_classes=self.data.num_classes,
            forget=(x[forget].to(self.device), y[forget].to(self.device)),
            retain=(x[~forget].to(self.device), y[~forget].to(self.device)),
            generated=(torch.cat(list(generated.values())).to(self.device), gen_labels.to(self.device)),
            cond_drop=self.config.train.cond_drop, generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip

    def run(self, spec: RunSpec) -> dict[str, Any]:
        """One unlearning run from a fresh copy of the original model; its record (a failure is recorded, not raised)."""
        model = copy.deepcopy(self.original).train()
        method = build_method(spec.method, spec.options)
        record: dict[str, Any] = {"class": spec.forget_class, "class_name": self.data.classes[spec.forget_class],
                                  "method": spec.method, "strategy": spec.strategy, "seed": spec.seed}  # fmt: skip
        try:
            log = unlearn(model, method, self.context(spec.forget_class, spec.seed), strategy=spec.strategy,
                          settings=spec.settings, iterations=spec.iterations, batch_size=self.config.unlearn.batch_size,
                          seed=spec.seed, progress_bar=self.progress_bar)  # fmt: skip
        except NonFiniteLoss as error:
            return {**record, "failed": str(error)}
        tick = time.perf_counter()
        e = self.config.eval
        per_class = {c: (e.forget_samples if c == spec.forget_class else e.kept_samples) for c in range(self.data.num_classes)}
        generated = self.generate(model, per_class, seed=spec.seed)
        return {**record, "metrics": self.metrics(generated, spec.forget_class), "seconds": log.seconds,
                "eval_seconds": time.perf_counter() - tick, "steps": log.steps,
                "final_losses": {k: v[-1] if v else None for k, v in log.losses.items()},
                "grid": self.grid(generated, spec.forget_class, spec.seed)}  # fmt: skip


def run_benchmark(config: DiffusionConfig, out: str | Path, *, progress_bar: bool = True,
                  command: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Run (or resume) every (class, method, strategy, seed) and write results.json, table and figures to ``out``."""
    from dualoptim.diffusion.results import build_results
    from dualoptim.io import write_json_atomic

    start = time.perf_counter()
    bench = Benchmark(config, progress_bar=progress_bar, log=log, command=command)
    store = open_output(out, to_dict(config), bench.started)
    shared_key = {"original": bench.original_meta.get("key"), "classifier": bench.classifier_meta.get("key"),
                  "sample": to_dict(config.sample), "eval": to_dict(config.eval), "classes": bench.forget_classes,
                  "checkpoint": config.model.checkpoint}  # fmt: skip
    # the do-nothing control of every seed (a sampling pass of the original each): cheap, so all come first
    originals = [store.get_or_run(f"original/seed{seed}", stable_hash({**shared_key, "seed": seed}),
                                  lambda seed=seed: bench.original_record(seed))[0] for seed in config.seeds]  # fmt: skip
    records = []
    for spec in bench.specs():
        record, fresh = store.get_or_run(spec.name, spec.key, lambda spec=spec: bench.run(spec))
        if fresh:
            m = record.get("metrics", {})
            log(f"{spec.name}: " + (record["failed"] if "failed" in record else
                f"FA {m['FA']:.1f}  {distance_name(config)} {m['FD']:.2f}  kept acc {m['kept_accuracy']:.1f}  "
                f"({record['seconds']:.0f}s + eval {record['eval_seconds']:.0f}s)"))  # fmt: skip
        records.append(record)
    results = build_results(config, bench.started, originals, records, time.perf_counter() - start,
                            classes=bench.data.classes, distance=distance_name(config))  # fmt: skip
    write_json_atomic(Path(out) / "results.json", results)
    return results
