"""``dualoptim unlearn`` for image classifiers: honour a deletion request on a user's own model and
data, save the unlearned model in the input's format, and audit what was done.

:func:`unlearn_images` is the Python API the command wraps. It loads the model
(:mod:`~dualoptim.vision.formats`) and the data (:mod:`~dualoptim.vision.sources`), resolves the
forget set from ids or a class, runs the task's one loop (:func:`~dualoptim.vision.loop.unlearn`)
with streamed batches and a checkpoint every ``checkpoint_every`` steps, scores every set before
and after, and writes the audit (:mod:`dualoptim.audit`) next to the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dualoptim.audit import (
    SetScores,
    build_audit,
    parse_requirements,
    sha256_file,
    sha256_ids,
    sha256_path,
    write_audit,
)
from dualoptim.audit.record import load_scores, scores_to_json
from dualoptim.config import option
from dualoptim.devices import resolve_device, set_threads
from dualoptim.io import write_text_atomic
from dualoptim.metrics.mia import entropy
from dualoptim.runs import environment, stable_hash
from dualoptim.schedule import Schedule, plan_steps
from dualoptim.strategies import STRATEGIES, OptimizerSettings, check_strategy
from dualoptim.vision.config import OptimConfig
from dualoptim.vision.formats import LoadedModel, load_classifier
from dualoptim.vision.loop import unlearn
from dualoptim.vision.methods import METHODS, build_method
from dualoptim.vision.sources import LoaderSource, Samples, in_memory, open_samples, subset_indices

__all__ = ["ImageRequest", "audit_images", "run_probes", "read_ids", "resolve_sets", "score_sets", "unlearn_images"]


@dataclass
class ImageRequest:
    """A deletion request on an image classifier: ``dualoptim unlearn``'s options for images."""

    model: str = option("project checkpoint (.pt/.safetensors), torchvision:ARCH / timm:ARCH, or a Hugging Face folder or id", "")
    weights: str | None = option("weights file of a torchvision:/timm: model (.safetensors or a .pt state dict)", None)
    trust_pickle: bool = option("allow a .pt holding a pickled whole model (unpickling runs code)", False)
    image_size: int = option("image side for torchvision/timm/pickled models reading image files", 224)
    data: str = option("digits | fashion-mnist | IDX folder | image folder (one sub-folder per class) | CSV of path,label", "")
    data_root: str | None = option("folder of the embedded data sets (default: ../shared/data)", None)
    forget: str | None = option("file of sample ids to forget (one per line, or a JSON list)", None)
    forget_class: str | None = option("forget every example of this class (name or label)", None)
    retain: str | None = option("file of retain ids (default: every training example not forgotten)", None)
    heldout: str | None = option("data not in the forget or retain sets, the audit's control (default: the test split)", None)
    heldout_unseen: bool = option("you know the model never saw the held-out data (else it is described as data not "
                                  "in the forget or retain sets)", False)
    method: str = option("unlearning method (FT, GA, NegGrad+, RL, SalUn, SCRUB, SFRon)", "NegGrad+")
    method_options: dict[str, Any] = option("hyper-parameters of the method", factory=dict)
    strategy: str = option("joint | alternate | dual | dual+ | dual-8bit | dual+-8bit", "dual")
    epochs: int = option("outer iterations: each one pass over the forget set, then retain steps", 5)
    steps: int | None = option("total optimizer steps instead of epochs", None)
    retain_ratio: float = option("retain steps per forget step within an epoch", 2.0)
    forget_lr: float | None = option("forget learning rate (default: the strategy's)", None)
    lr: float | None = option("retain learning rate (default: the strategy's)", None)
    batch_size: int = option("mini-batch size", 64)
    device: str = option("cpu | cuda | cuda:N | auto", "auto")
    threads: int | None = option("torch CPU threads", None)
    workers: int | None = option("DataLoader workers (default: 0 for in-memory data, 4 for image files)", None)
    eval_examples: int = option("examples per set scored for the audit (a fixed random subset of larger sets)", 10000)
    checkpoint_every: int = option("save a resumable checkpoint every N steps", 100)
    seed: int = option("seed of batch order, random labels and masks", 0)
    bootstrap: int = option("bootstrap resamples of each MIA AUC", 1000)
    require: list[str] = option("audit thresholds, e.g. mia_auc<=0.55,retain_drop<=2 (exit 3 when one fails)", factory=list)
    probes: list[str] = option("robustness probes of the audit: relearn, int8, 4bit (docs/design.md §7.5)", factory=list)
    relearn_steps: int = option("relearn probe: SGD steps (batch_size examples each)", 5)
    relearn_rows: int = option("relearn probe: forget examples it trains on (the other forget examples are scored)", 8)
    relearn_lr: float = option("relearn probe: SGD learning rate (momentum 0.9)", 0.01)


def read_ids(path: str | os.PathLike[str]) -> list[str]:
    """Sample ids from a file: a JSON list, or one id per line (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"id file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            ids = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(ids, list):
            raise ValueError(f"{path} must hold a JSON list of ids, got {type(ids).__name__}")
        return [str(i) for i in ids]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _first(items: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(i) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def _ids_to_indices(ids: list[str], samples: Samples, what: str) -> torch.Tensor:
    seen, duplicated = set(), []
    for sample_id in ids:
        if sample_id in seen:
            duplicated.append(sample_id)
        seen.add(sample_id)
    if duplicated:
        raise ValueError(f"the {what} list repeats {len(duplicated)} id(s): {_first(duplicated)}")
    index = samples.index()
    absent = [i for i in ids if i not in index]
    if absent:
        raise ValueError(f"{len(absent)} {what} id(s) are not in the data {samples.description}: {_first(absent)}")
    return torch.tensor(sorted(index[i] for i in ids), dtype=torch.int64)


def resolve_sets(request: ImageRequest, samples: Samples) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Indices of the forget and retain sets, and the forget ids; every bad request is a ``ValueError``."""
    if (request.forget is None) == (request.forget_class is None):
        raise ValueError("give the forget set as exactly one of --forget FILE or --forget-class NAME")
    if request.forget is not None:
        forget = _ids_to_indices(read_ids(request.forget), samples, "forget")
        if len(forget) == 0:
            raise ValueError(f"the forget list {request.forget} is empty")
    else:
        names = samples.classes or []
        name = request.forget_class
        label = names.index(name) if name in names else (int(name) if name.isdigit() else None)
        if label is None:
            raise ValueError(f"unknown class {name!r}; the data's classes: {', '.join(names) or 'integer labels'}")
        forget = torch.nonzero(samples.labels == label).flatten()
        if len(forget) == 0:
            raise ValueError(f"class {name!r} (label {label}) has no examples in {samples.description}")
    if len(forget) == len(samples):
        raise ValueError(f"the forget set is the whole data set ({len(samples)} examples): nothing would be retained")
    if request.retain is not None:
        retain = _ids_to_indices(read_ids(request.retain), samples, "retain")
        overlap = sorted(set(retain.tolist()) & set(forget.tolist()))
        if overlap:
            raise ValueError(f"{len(overlap)} id(s) are in both the forget and the retain list: {_first([samples.ids[i] for i in overlap])}")
    else:
        keep = torch.ones(len(samples), dtype=torch.bool)
        keep[forget] = False
        retain = torch.nonzero(keep).flatten()
    if len(retain) == 0:
        raise ValueError("the retain set is empty: unlearning needs examples to keep")
    return forget, retain, [samples.ids[i] for i in forget.tolist()]


def _request_sets(request: Any, samples: Any, heldout: Any, requirements: Sequence[Any], models: Sequence[Any]):
    """``(forget, retain indices, forget ids, held-out indices or None)`` of a request or an audit, after
    the checks both share: a held-out criterion or a probe needs a held-out set, and every model's
    classes must cover the labels of each set."""
    needs_heldout = any(r.criterion.startswith(("mia", "ks", "heldout", "forget_gap")) or "vs_heldout" in r.criterion
                        for r in requirements)  # fmt: skip
    if heldout is None and needs_heldout:
        raise ValueError("--require names a held-out criterion but there is no held-out set (give --heldout)")
    if request.probes and heldout is None:
        raise ValueError(f"the probes {', '.join(request.probes)} compare the forget set with the held-out set: give --heldout")
    forget_idx, retain_idx, forget_ids = resolve_sets(request, samples)
    for model_info in models:
        _check_labels(model_info, samples, forget_idx, "forget")
        _check_labels(model_info, samples, retain_idx, "retain")
    heldout_idx = None
    if heldout is not None:
        heldout_idx = torch.arange(len(heldout))
        _check_labels(models[0], heldout, heldout_idx, "held-out")
        if request.forget_class is not None:
            # non-members of the forgotten class: a whole class against every class would measure the class, not membership
            heldout_idx = torch.nonzero(heldout.labels == int(samples.labels[forget_idx[0]])).flatten()
    return forget_idx, retain_idx, forget_ids, heldout_idx


def _check_labels(loaded: LoadedModel, samples: Samples, indices: torch.Tensor, what: str) -> None:
    labels = samples.labels[indices]
    data_classes = max(int(samples.labels.max()) + 1, len(samples.classes or []))
    bad = labels >= loaded.num_classes
    if bad.any():
        where = int(indices[bad.nonzero()[0, 0]])
        raise ValueError(
            f"label {int(samples.labels[where])} of {what} example {samples.ids[where]!r} is outside the model's head: "
            f"the model has {loaded.num_classes} outputs, the data has {data_classes} classes"
        )


def _check_forward(model: nn.Module, source: LoaderSource, num_classes: int) -> None:
    images, _ = source.sample(1, torch.Generator().manual_seed(0))
    model.eval()
    try:
        with torch.no_grad():
            logits = model(images)
    except RuntimeError as error:
        raise ValueError(
            f"the model cannot read the data's images of shape {tuple(images.shape[1:])}: {' '.join(str(error).split())[:160]}"
        ) from None
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"the model returns shape {tuple(logits.shape)}, expected (batch, {num_classes}) logits")


@torch.no_grad()
def score_sets(model: nn.Module, sources: dict[str, LoaderSource]) -> dict[str, SetScores]:
    """Accuracy, per-example loss, and the loss and entropy membership scores of each set.

    Attack scores are "higher = member": the negative loss and the negative prediction entropy
    (a model is more confident, so lower in both, on what it trained on).
    """
    was_training = model.training
    model.eval()
    scores = {}
    try:
        for name, source in sources.items():
            losses, entropies, correct = [], [], []
            for images, labels in source.batches():
                logits = model(images).float()
                losses.append(F.cross_entropy(logits, labels, reduction="none").cpu())
                entropies.append(entropy(torch.softmax(logits, dim=1)).cpu())
                correct.append((logits.argmax(dim=1) == labels).cpu())
            loss = torch.cat(losses).double().numpy()
            hits = 100.0 * torch.cat(correct).double().numpy()
            scores[name] = SetScores(
                metrics={"accuracy": float(hits.mean())},
                loss=loss,
                attacks={"loss": -loss, "entropy": -torch.cat(entropies).double().numpy()},
                per_example={"accuracy": hits},
            )
    finally:
        model.train(was_training)
    return scores


def _settings(request: ImageRequest) -> OptimizerSettings:
    """The strategy's default rates (``vision.config.OptimConfig``), unless --forget-lr / --lr say otherwise."""
    optim = OptimConfig()
    strategy = STRATEGIES.get(request.strategy)
    rates_of = strategy.name if strategy.name in optim.forget_lr else strategy.rates_from
    return OptimizerSettings(
        forget_lr=request.forget_lr if request.forget_lr is not None else optim.forget_lr[rates_of],
        retain_lr=request.lr if request.lr is not None else optim.retain_lr[rates_of],
        family=optim.family, momentum=optim.momentum, weight_decay=optim.weight_decay,
        forget_betas=tuple(optim.forget_betas), forget_weight_decay=optim.forget_weight_decay,
        plus_betas=tuple(optim.plus_betas), plus_weight_decay=optim.plus_weight_decay,
    )  # fmt: skip


def _schedule(request: ImageRequest, forget_size: int) -> tuple[Schedule, int | None]:
    """Epochs of (one pass over D_f, then ``retain_ratio`` times as many retain steps), or the
    method's published fixed ratio; ``--steps`` sets the total instead."""
    defaults = METHODS.get(request.method).schedule_defaults
    forget_steps = defaults.get("forget_steps", math.ceil(forget_size / request.batch_size))
    retain_steps = defaults.get("retain_steps", max(1, round(request.retain_ratio * forget_steps)))
    iterations = request.epochs
    if request.steps is not None:
        method = METHODS.get(request.method)
        # the length of one outer iteration for this method and strategy (a method may lack a loss)
        one = plan_steps(Schedule(1, forget_steps, retain_steps), forget_size=forget_size, retain_size=1,
                         batch_size=request.batch_size, has_forget=method.has_forget, has_retain=method.has_retain,
                         joint=STRATEGIES.get(request.strategy).joint)  # fmt: skip
        iterations = math.ceil(request.steps / len(one))
    return Schedule(outer_iterations=iterations, forget_steps=forget_steps, retain_steps=retain_steps), request.steps


def validate(request: ImageRequest) -> None:
    """Fail before any loading, naming the bad value."""
    if not request.model:
        raise ValueError("--model is required")
    if not request.data:
        raise ValueError("--data is required")
    METHODS.get(request.method)
    if METHODS.get(request.method).from_scratch:
        raise ValueError(f"{request.method} retrains from scratch; choose an unlearning method")
    build_method(request.method, request.method_options)
    for name in ("epochs", "batch_size", "checkpoint_every", "eval_examples", "bootstrap", "image_size"):
        if getattr(request, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(request, name)}")
    if request.steps is not None and request.steps < 1:
        raise ValueError(f"steps must be >= 1, got {request.steps}")
    if request.retain_ratio < 0:
        raise ValueError(f"retain_ratio must be >= 0, got {request.retain_ratio}")
    check_strategy(request.strategy, _settings(request))
    parse_requirements(request.require)
    _check_probe_options(request, heldout=True)


def _check_probe_options(request: ImageRequest, heldout: bool) -> None:
    from dualoptim.audit.probes import check_probes

    for name in ("relearn_steps", "relearn_rows"):
        if getattr(request, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(request, name)}")
    if not request.relearn_lr > 0:
        raise ValueError(f"relearn_lr must be > 0, got {request.relearn_lr}")
    check_probes(list(request.probes), heldout=heldout, device_type=resolve_device(request.device).type)
    if "4bit" in request.probes:
        raise ValueError("the 4bit probe is for causal LMs (bitsandbytes loads transformers models); use int8 for an image classifier")


def run_probes(model: nn.Module, audit_sets: dict[str, LoaderSource], request: ImageRequest,
               after: dict[str, SetScores]) -> dict[str, Any]:  # fmt: skip
    """The robustness probes of ``request.probes`` on copies of ``model`` (:mod:`dualoptim.audit.probes`)."""
    import copy
    import warnings

    from dualoptim.audit.probes import compare_return

    probed = {name: audit_sets[name] for name in ("forget", "heldout")}

    def relearn(source: LoaderSource) -> dict[str, SetScores]:
        m = copy.deepcopy(model)
        m.train()
        optimizer = torch.optim.SGD(m.parameters(), lr=request.relearn_lr, momentum=0.9)
        generator = torch.Generator().manual_seed(request.seed)
        for _ in range(request.relearn_steps):
            images, labels = source.sample(request.batch_size, generator)
            optimizer.zero_grad()
            F.cross_entropy(m(images), labels).backward()
            optimizer.step()
        return score_sets(m, probed)

    results: dict[str, Any] = {}
    steps = f"{request.relearn_steps} SGD steps (lr {request.relearn_lr:g}, {request.batch_size} examples each)"
    if "relearn" in request.probes:
        results["relearn on the retain set"] = compare_return(after, relearn(audit_sets["retain"]), "accuracy",
                                                              f"{steps} on the retain set")  # fmt: skip
        forget = audit_sets["forget"]
        shown = min(request.relearn_rows, len(forget) - 1)
        if shown >= 1:
            few = LoaderSource(forget.samples, forget.indices[:shown], forget.device, workers=forget.workers)
            few_steps = f"{request.relearn_steps} SGD steps (lr {request.relearn_lr:g}, {min(shown, request.batch_size)} examples each)"
            results["relearn on a few forget examples"] = compare_return(
                after, relearn(few), "accuracy", f"{few_steps} on {shown} forget examples; the other {len(forget) - shown} scored",
                exclude=shown)  # fmt: skip
    if "int8" in request.probes:
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch.ao.quantization warns of its move to torchao; it still works
            warnings.simplefilter("ignore")
            quantised = quantize_dynamic(copy.deepcopy(model).cpu().float(), {nn.Linear}, dtype=torch.qint8)
        cpu = {name: LoaderSource(s.samples, s.indices, torch.device("cpu"), workers=s.workers) for name, s in probed.items()}
        results["int8 quantisation"] = compare_return(after, score_sets(quantised, cpu), "accuracy",
                                                      "torch dynamic int8 quantisation of the Linear layers (convolutions stay float)")  # fmt: skip
    return results


class _ResumeFile:
    """The loop's checkpoints in ``out/.resume.pt``, valid only for the request (key) that wrote them."""

    def __init__(self, path: Path, key: str, every: int) -> None:
        self.path, self.key, self.every = path, key, every

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:
            return None  # a corrupt checkpoint: start again
        return payload["state"] if payload.get("key") == self.key else None

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        torch.save({"key": self.key, "state": state}, tmp)
        os.replace(tmp, self.path)


def unlearn_images(
    request: ImageRequest,
    out: str | os.PathLike[str],
    *,
    progress_bar: bool = True,
    command: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Carry out ``request``: unlearn, write the model and the audit into ``out``, return the audit.

    An interrupted call resumes from ``out``'s last checkpoint when called again with the same
    request. The input model and data are only read.
    """
    started = time.perf_counter()
    validate(request)
    requirements = parse_requirements(request.require)
    set_threads(request.threads)
    env = environment(command)
    device = resolve_device(request.device)
    out = Path(out)

    loaded = load_classifier(request.model, weights=request.weights, trust_pickle=request.trust_pickle,
                             image_size=request.image_size)  # fmt: skip
    if loaded.weights_path is not None and _overlaps(out, loaded.weights_path):
        raise ValueError(f"--out {out} would overwrite the input model {loaded.weights_path}: choose another folder")
    samples, test = open_samples(request.data, data_root=request.data_root, transform=loaded.transform, classes=loaded.classes)
    if loaded.meta.get("train_subset"):
        # the model saw only a subset of the data: that subset is its training data
        samples = samples.restrict(subset_indices(len(samples), loaded.meta["train_subset"]),
                                   f"{samples.description}, the {loaded.meta['train_subset']} examples the model was trained on")  # fmt: skip
    heldout = test
    if request.heldout is not None:
        heldout, _ = open_samples(request.heldout, transform=loaded.transform, classes=loaded.classes or samples.classes)
    forget_idx, retain_idx, forget_ids, heldout_idx = _request_sets(request, samples, heldout, requirements, [loaded])

    streamed = not in_memory(request.data)
    workers = request.workers if request.workers is not None else (min(4, os.cpu_count() or 1) if streamed else 0)
    model = loaded.model.to(device)
    sources = {
        "forget": LoaderSource(samples, forget_idx, device, workers=workers),
        "retain": LoaderSource(samples, retain_idx, device, workers=workers),
    }
    if heldout is not None:
        sources["heldout"] = LoaderSource(heldout, heldout_idx, device, workers=workers)
    _check_forward(model, sources["forget"], loaded.num_classes)
    # The audit scores fixed random subsets of large sets, the same ones before and after.
    picker = torch.Generator().manual_seed(request.seed)
    audit_sets = {name: source.subset(request.eval_examples, picker) for name, source in sources.items()}
    log(f"forget {len(forget_idx)}, retain {len(retain_idx)}, held-out {len(heldout_idx) if heldout else 0} examples; "
        f"{request.method}/{request.strategy} on {device}")  # fmt: skip

    input_sha = sha256_path(loaded.weights_path) if loaded.weights_path is not None else None
    settings = _settings(request)
    schedule, max_steps = _schedule(request, len(forget_idx))
    key = stable_hash({"request": _trajectory_options(request), "input": input_sha, "forget": sha256_ids(forget_ids),
                       "device": device.type})  # fmt: skip
    resume = _ResumeFile(out / ".resume.pt", key, request.checkpoint_every)
    out.mkdir(parents=True, exist_ok=True)
    # the "before" scores of this request, cached beside its checkpoint: a resumed run does not score them again
    # (the scored subsets are fixed by the seed, in the key, and eval_examples)
    cache = out / f".before-{stable_hash({'key': key, 'eval_examples': request.eval_examples})}.json"
    for stale in out.glob(".before-*.json"):
        if stale != cache:
            stale.unlink()  # another request's: never read
    before = load_scores(cache)
    before_cached = before is not None
    if before is None:
        before = score_sets(model, audit_sets)
        write_text_atomic(cache, json.dumps({name: scores_to_json(s) for name, s in before.items()}))
    method = build_method(request.method, request.method_options)
    run_log = unlearn(
        model, method, sources["forget"], sources["retain"], strategy=request.strategy, settings=settings,
        schedule=schedule, batch_size=request.batch_size, seed=request.seed, progress_bar=progress_bar,
        max_steps=max_steps, checkpoints=resume,
    )  # fmt: skip
    after = score_sets(model, audit_sets)
    model_path = loaded.save(out)
    output_sha = sha256_path(model_path)

    record = {
        "task": "image classification",
        "model": {"source": loaded.source, "format": loaded.format, "weights": str(loaded.weights_path) if loaded.weights_path else None,
                  "input_sha256": input_sha, "output": model_path.name, "output_sha256": output_sha,
                  "num_classes": loaded.num_classes},
        "data": request.data,
        "forget": {"source": f"ids from {request.forget}" if request.forget else f"every example of class {request.forget_class!r}",
                   "ids_sha256": sha256_ids(forget_ids), "file_sha256": sha256_file(request.forget) if request.forget else None,
                   "first_ids": forget_ids[:10]},
        "counts": {"forget": len(forget_idx), "retain": len(retain_idx), "heldout": len(heldout_idx) if heldout else 0,
                   "scored": {name: len(s) for name, s in audit_sets.items()}},
        "method": request.method,
        "strategy": request.strategy,
        "steps": run_log.steps,
        "settings": {"forget_lr": settings.forget_lr, "lr": settings.retain_lr, "batch_size": request.batch_size,
                     "epochs": schedule.outer_iterations, "forget_steps": schedule.forget_steps,
                     "retain_steps": schedule.retain_steps, "seed": request.seed, "device": str(device),
                     "before_cached": before_cached,
                     **{f"method.{k}": v for k, v in request.method_options.items()}},
        "options": dataclasses.asdict(request),
        "unlearn_seconds": run_log.seconds,
        "seconds": time.perf_counter() - started,
        "environment": {**env, "python": platform.python_version()},
    }  # fmt: skip
    audit = build_audit(request=record, before=before, after=after, primary="accuracy", requirements=requirements,
                        seed=request.seed, bootstrap=request.bootstrap, heldout_unseen=request.heldout_unseen,
                        defaults=_class_defaults(request, before is None))  # fmt: skip
    if request.probes:
        audit["probes"] = run_probes(model, audit_sets, request, after)
    if request.forget_class is not None and heldout is not None:
        audit["notes"].append(f"Class forgetting: the held-out set is the held-out examples of class {request.forget_class!r} "
                              "only, so its accuracy is expected to fall with the forget set's; retain_drop is the utility cost.")
    losses = {when: {name: s.loss for name, s in scores.items()} for when, scores in (("before", before), ("after", after))}
    write_audit(audit, out, losses)
    resume.path.unlink(missing_ok=True)
    cache.unlink(missing_ok=True)
    return audit


def audit_images(
    request: ImageRequest,
    out: str | os.PathLike[str],
    *,
    original: str | None = None,
    original_weights: str | None = None,
    command: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """``dualoptim audit``: audit ``request.model`` as it is, without unlearning; write ``audit.json``,
    ``audit.md`` and plots into ``out``; return the audit.

    Without ``original`` the audit asks "does this model still know these records?": the forget
    set against the held-out set on this one model. With ``original`` (the model before unlearning,
    ``original_weights`` for a torchvision:/timm: one) it is the full before/after audit of
    :func:`unlearn_images`, whose negative control is ``original == model`` (never PASSED). The
    unlearning options of ``request`` are not used; the models and data are only read.
    """
    started = time.perf_counter()
    if not request.model:
        raise ValueError("--model is required")
    if not request.data:
        raise ValueError("--data is required")
    for name in ("eval_examples", "bootstrap", "image_size"):
        if getattr(request, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(request, name)}")
    requirements = parse_requirements(request.require)
    _check_probe_options(request, heldout=True)
    set_threads(request.threads)
    env = environment(command)
    device = resolve_device(request.device)
    loaded = load_classifier(request.model, weights=request.weights, trust_pickle=request.trust_pickle, image_size=request.image_size)
    if loaded.weights_path is not None and _overlaps(Path(out), loaded.weights_path):
        raise ValueError(f"--out {out} would write into the audited model's folder {loaded.weights_path}: choose another folder")
    before_model = None
    if original is not None:
        before_model = load_classifier(original, weights=original_weights, trust_pickle=request.trust_pickle,
                                       image_size=request.image_size)  # fmt: skip
        if before_model.num_classes != loaded.num_classes:
            raise ValueError(f"--original {original} has {before_model.num_classes} outputs, --model {request.model} "
                             f"has {loaded.num_classes}: not the same classifier before and after")  # fmt: skip
    # the data the models were trained on is the original's (a retrained model saw less of it)
    reference = before_model or loaded
    samples, test = open_samples(request.data, data_root=request.data_root, transform=loaded.transform,
                                 classes=reference.classes)  # fmt: skip
    if reference.meta.get("train_subset"):
        samples = samples.restrict(subset_indices(len(samples), reference.meta["train_subset"]),
                                   f"{samples.description}, the {reference.meta['train_subset']} examples the model was trained on")  # fmt: skip
    heldout = test
    if request.heldout is not None:
        heldout, _ = open_samples(request.heldout, transform=loaded.transform, classes=loaded.classes or samples.classes)
    models = [m for m in (loaded, before_model) if m is not None]
    forget_idx, retain_idx, forget_ids, heldout_idx = _request_sets(request, samples, heldout, requirements, models)
    workers = request.workers if request.workers is not None else (min(4, os.cpu_count() or 1) if not in_memory(request.data) else 0)
    sources = {"forget": LoaderSource(samples, forget_idx, device, workers=workers),
               "retain": LoaderSource(samples, retain_idx, device, workers=workers)}  # fmt: skip
    if heldout is not None:
        sources["heldout"] = LoaderSource(heldout, heldout_idx, device, workers=workers)
    picker = torch.Generator().manual_seed(request.seed)
    audit_sets = {name: source.subset(request.eval_examples, picker) for name, source in sources.items()}
    model = loaded.model.to(device)
    _check_forward(model, sources["forget"], loaded.num_classes)
    after = score_sets(model, audit_sets)
    before = None
    if before_model is not None:
        first = before_model.model.to(device)
        _check_forward(first, sources["forget"], before_model.num_classes)
        before = score_sets(first, audit_sets)
    log(f"audit of {request.model}{f' against {original}' if original else ''}: forget {len(forget_idx)}, "
        f"retain {len(retain_idx)}, held-out {len(heldout_idx) if heldout is not None else 0} examples on {device}")  # fmt: skip
    record = {
        "task": "image classification",
        "model": {"source": loaded.source, "format": loaded.format, "input_sha256": _weights_sha(loaded),
                  "original": original, "original_sha256": _weights_sha(before_model) if before_model else None,
                  "num_classes": loaded.num_classes},
        "data": request.data,
        "forget": {"source": f"ids from {request.forget}" if request.forget else f"every example of class {request.forget_class!r}",
                   "ids_sha256": sha256_ids(forget_ids), "file_sha256": sha256_file(request.forget) if request.forget else None,
                   "first_ids": forget_ids[:10]},
        "counts": {"forget": len(forget_idx), "retain": len(retain_idx), "heldout": len(heldout_idx) if heldout is not None else 0,
                   "scored": {name: len(s) for name, s in audit_sets.items()}},
        "options": dataclasses.asdict(request),
        "seconds": time.perf_counter() - started,
        "environment": {**env, "python": platform.python_version()},
    }  # fmt: skip
    audit = build_audit(request=record, before=before, after=after, primary="accuracy", requirements=requirements,
                        seed=request.seed, bootstrap=request.bootstrap, heldout_unseen=request.heldout_unseen,
                        defaults=_class_defaults(request, before is None))  # fmt: skip
    if request.probes:
        audit["probes"] = run_probes(model, audit_sets, request, after)
    losses = {"after": {name: s.loss for name, s in after.items()}}
    if before is not None:
        losses["before"] = {name: s.loss for name, s in before.items()}
    write_audit(audit, out, losses)
    return audit


def _class_defaults(request: ImageRequest, single: bool):
    """Class forgetting is judged by the class being gone, not by a difference from its own held-out examples."""
    from dualoptim.audit.requirements import CLASS_REQUIREMENTS

    return CLASS_REQUIREMENTS if request.forget_class is not None and not single else None


def _weights_sha(loaded: LoadedModel) -> str | None:
    return sha256_path(loaded.weights_path) if loaded.weights_path is not None else None


#: options that change the audit or the speed, not the steps unlearning takes: a changed one still resumes
_NOT_IN_KEY = ("require", "bootstrap", "eval_examples", "threads", "workers", "checkpoint_every", "max_new_tokens", "min_k",
               "heldout_unseen", "probes", "relearn_steps", "relearn_rows", "relearn_lr")


def _trajectory_options(request) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(request).items() if k not in _NOT_IN_KEY}


def _overlaps(out: Path, model: Path) -> bool:
    """Whether writing into ``out`` could replace the input model file or folder."""
    out, model = out.resolve(), model.resolve()
    return out == model or out == model.parent or model in out.parents or out in model.parents
