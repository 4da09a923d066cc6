"""The TOFU benchmark: every (task, loss, strategy) unlearned, evaluated, and summarised.

Layout of the output folder::

    config.json                      the effective config
    tasks/task<T>/reference.json     target and retain-model evaluations of forget task T
    tasks/task<T>/<LOSS>__<STRATEGY>.json   one finished unlearning run (skipped on resume)
    results.json, table.md, tofu_curves.png  generated from the files above

Each finished piece is written atomically, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import copy
import json
import platform
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualoptim.io import read_json, write_json_atomic
from dualoptim.llm import evaluate as E
from dualoptim.llm.config import TofuConfig, to_dict
from dualoptim.llm.data import (
    TofuSource,
    TofuSplit,
    UnlearningCollator,
    UnlearningDataset,
    all_rows,
    load_split,
)
from dualoptim.llm.losses import UnlearningLoss
from dualoptim.llm.strategies import OptimizerSettings
from dualoptim.llm.trainer import (
    AlternationSchedule,
    NonFiniteLossError,
    TrajectoryCallback,
    UnlearningTrainer,
)
from dualoptim.metrics import tofu as M

SUMMARY_METRICS = ("UFE", "TFE", "MU", "OVR", "Forget Quality", "Model Utility")
TINY_SET_REASON = (
    "not evaluated: the tiny model never saw real authors or world facts, so utility there is meaningless"
)


def run_benchmark(
    config: TofuConfig, out: Path, progress: bool = True, command: list[str] | None = None
) -> dict[str, Any]:
    """Run (or resume) the whole benchmark into ``out`` and return ``results.json``'s content."""
    from tqdm.auto import tqdm

    from dualoptim.paths import default_cache_dir

    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    _check_resumable(config, out)
    write_json_atomic(out / "config.json", to_dict(config))
    started = time.perf_counter()
    source = TofuSource(config.data.path, hub=config.data.source == "hub")
    cache = default_cache_dir()
    models = _load_models(config, source, cache, progress)
    embedder, embedder_reason = E.load_embedder()

    combos = [
        (task, loss, strategy)
        for task in config.tasks
        for loss in config.losses
        for strategy in config.strategies
    ]
    bar = tqdm(total=len(combos), desc="tofu runs", disable=not progress)
    for task in config.tasks:
        split = load_split(source, config.data.split, task)
        eval_sets = _eval_sets(config, split)
        reference = _reference(
            config, models, split, eval_sets, out, cache, embedder, embedder_reason, progress
        )
        for loss in config.losses:
            for strategy in config.strategies:
                path = out / "tasks" / f"task{task}" / f"{_slug(loss)}__{_slug(strategy)}.json"
                bar.set_postfix_str(f"task {task} {loss} {strategy}")
                if not path.is_file():
                    record = _unlearn_one(
                        config,
                        models,
                        split,
                        eval_sets,
                        loss,
                        strategy,
                        reference,
                        embedder,
                        embedder_reason,
                        out,
                        progress,
                    )
                    write_json_atomic(path, record)
                bar.update(1)
    bar.close()
    results = summarise(config, out, time.perf_counter() - started, models["log"])
    results["command"] = command
    write_json_atomic(out / "results.json", results)
    from dualoptim.llm.report import plot_curves, render_table

    (out / "table.md").write_text(render_table(results), encoding="utf-8")
    plot_curves(results, out / "tofu_curves.png")
    return results


#: fields a resumed run may change: they add or pick runs, they do not change finished ones
RESUMABLE_CHANGES = ("losses", "strategies", "tasks", "threads")


def _check_resumable(config: TofuConfig, out: Path) -> None:
    """Refuse to mix finished runs of another config into this one's results."""
    path = out / "config.json"
    if not path.is_file():
        return
    old = {k: v for k, v in read_json(path).items() if k not in RESUMABLE_CHANGES}
    new = {k: v for k, v in json.loads(json.dumps(to_dict(config))).items() if k not in RESUMABLE_CHANGES}
    if old != new:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(
            f"{out} holds results of a different config (sections {', '.join(changed)} differ); "
            "use another --out, or the same settings to resume"
        )


# --------------------------------------------------------------------------- models


def _load_models(config: TofuConfig, source: TofuSource, cache: Path, progress: bool) -> dict[str, Any]:
    from dualoptim.llm.models import load_pretrained, tiny_model, tiny_tokenizer

    if config.model.kind == "pretrained":
        model, tokenizer = load_pretrained(
            config.model.name_or_path, config.model.dtype, config.model.pad_token
        )
        return {"target": model, "tokenizer": tokenizer, "log": {"target": config.model.name_or_path}}
    rows = all_rows(source)
    tokenizer = tiny_tokenizer([f"{r['question']} {r['answer']}" for r in rows], config.model.tiny, cache)
    target, log = tiny_model(
        "target",
        rows,
        tokenizer,
        config.data.format,
        config.model.tiny,
        config.data.max_length,
        cache,
        config.seed,
        progress,
    )
    return {"target": target, "tokenizer": tokenizer, "rows": rows, "log": {"target": log}}


def _retain_model(config: TofuConfig, models: dict[str, Any], split: TofuSplit, cache: Path, progress: bool):
    """The model trained without the forget rows, or ``(None, reason)``."""
    from dualoptim.llm.models import load_pretrained, tiny_model

    if config.model.kind == "tiny":
        model, log = tiny_model(
            f"retain-{split.split}-task{split.task}",
            split.retain,
            models["tokenizer"],
            config.data.format,
            config.model.tiny,
            config.data.max_length,
            cache,
            config.seed,
            progress,
        )
        return model, None, log
    path = config.model.retain_model.get(split.split)
    if path is None:
        return None, f"no retain model configured for {split.split} (model.retain_model.{split.split})", None
    model, _ = load_pretrained(path, config.model.dtype, config.model.pad_token)
    return model, None, {"path": path}


def _eval_sets(config: TofuConfig, split: TofuSplit) -> dict[str, list[dict[str, Any]]]:
    return {name: split.eval_sets[name][: config.data.eval_size] for name in config.data.eval_sets}


def _evaluate(config, model, tokenizer, eval_sets, progress) -> dict[str, dict[str, Any]]:
    return E.evaluate_model(
        model,
        tokenizer,
        config.data.format,
        eval_sets,
        config.data.max_length,
        config.data.max_new_tokens,
        config.data.eval_batch_size,
        progress,
    )


def _reference(
    config, models, split, eval_sets, out, cache, embedder, embedder_reason, progress
) -> dict[str, Any]:
    """Evaluations of the target (before unlearning) and of the retain model, computed once per task."""
    path = out / "tasks" / f"task{split.task}" / "reference.json"
    if path.is_file():
        return read_json(path)
    tokenizer = models["tokenizer"]
    start = time.perf_counter()
    target_raw = _evaluate(config, models["target"], tokenizer, eval_sets, progress)
    target_seconds = time.perf_counter() - start
    target_generations = {name: raw["generations"] for name, raw in target_raw.items()}
    record: dict[str, Any] = {"target_generations": target_generations}
    retain_model, reason, retain_log = _retain_model(config, models, split, cache, progress)
    record["retain_model_log"] = retain_log
    ratios = None
    if retain_model is not None:
        start = time.perf_counter()
        retain_raw = _evaluate(config, retain_model, tokenizer, eval_sets, progress)
        ratios = E.truth_ratios(retain_raw["forget"])
        record["retain_model"] = _score(
            config, retain_raw, target_generations, embedder, embedder_reason, ratios, None
        )
        record["retain_model"]["seconds"] = time.perf_counter() - start
    record["retain_truth_ratios"] = ratios
    record["target"] = _score(
        config, target_raw, target_generations, embedder, embedder_reason, ratios, None, reason
    )
    record["target"]["seconds"] = target_seconds
    record["retain_reason"] = reason
    write_json_atomic(path, record)
    return record


def _score(
    config: TofuConfig,
    raw: dict[str, dict[str, Any]],
    reference_generations: dict[str, list[str]] | None,
    embedder,
    embedder_reason,
    retain_truth_ratios: list[float] | None,
    loss: UnlearningLoss | None,
    retain_reason: str | None = None,
) -> dict[str, Any]:
    """Per-set values, Forget Quality, Model Utility and the closer-look aggregates."""
    per_set = {
        name: E.set_metrics(name, raw_set, embedder, embedder_reason, (reference_generations or {}).get(name))
        for name, raw_set in raw.items()
    }
    set_reasons = {}
    if config.model.kind == "tiny":
        set_reasons = {s: TINY_SET_REASON for s in ("real_authors", "world_facts")}
    metrics: dict[str, Any] = {}
    absent: dict[str, str] = {}
    for set_name, values in per_set.items():
        for name, value in values.items():
            if name.endswith(" (absent)"):
                continue
            metrics[f"{set_name}/{name}"] = value
            if value is None:
                absent[f"{set_name}/{name}"] = values[f"{name} (absent)"]
    if retain_truth_ratios is None:
        metrics["Forget Quality"] = None
        absent["Forget Quality"] = retain_reason or "no model trained without the forget set"
    else:
        metrics["Forget Quality"] = M.forget_quality(E.truth_ratios(raw["forget"]), retain_truth_ratios)
    utility = M.model_utility(per_set, set_reasons)
    targeted = loss.targeted if loss is not None else False
    aggregates = {"Model Utility": utility, **M.closer_look(per_set, targeted, set_reasons)}
    for name, aggregate in aggregates.items():
        metrics[name] = aggregate.value
        if aggregate.value is None:
            absent[name] = f"no component present: {aggregate.absent}"
    return {
        "metrics": metrics,
        "absent": absent,
        "aggregates": {name: a.to_json() for name, a in aggregates.items()},
        "examples": [
            {"question": q, "answer": a, "generation": g}
            for q, a, g in list(
                zip(raw["forget"]["questions"], raw["forget"]["answers"], raw["forget"]["generations"])
            )[:3]
        ],
    }


# --------------------------------------------------------------------------- one run


def _unlearn_one(
    config, models, split, eval_sets, loss_name, strategy, reference, embedder, embedder_reason, out, progress
) -> dict[str, Any]:
    """Unlearn one forget task with one (loss, strategy), evaluate, and return the record."""
    from transformers import TrainingArguments

    u = config.unlearn
    tokenizer = models["tokenizer"]
    loss = UnlearningLoss(loss_name, u.forget_coeff, u.regularization_coeff, u.beta)
    model = copy.deepcopy(models["target"])
    model.train()
    datasets = models.setdefault("datasets", {})  # tokenised once per task, shared by its runs
    if split.task not in datasets:
        datasets[split.task] = UnlearningDataset(
            tokenizer, split, config.data.format, config.data.max_length, config.seed
        )
    dataset = datasets[split.task]
    trajectory_sets = {
        name: eval_sets[name][: u.trajectory_size] for name in ("forget", "retain") if name in eval_sets
    }

    def curve(m: torch.nn.Module) -> dict[str, float]:
        values = {}
        for name, rows in trajectory_sets.items():
            nll = E.answer_nlls(
                m,
                tokenizer,
                config.data.format,
                [(r["question"], r["answer"]) for r in rows],
                config.data.max_length,
                config.data.eval_batch_size,
            )
            value = float(np.mean([M.probability(n) for n in nll]))
            # a diverged model gives NaN: JSON has no NaN, and the stop reason is recorded anyway
            values[f"{name}/Probability"] = value if np.isfinite(value) else None
        return values

    callback = TrajectoryCallback(curve, u.eval_every)
    run_dir = out / "tasks" / f"task{split.task}" / f"checkpoints-{_slug(loss_name)}__{_slug(strategy)}"
    args = TrainingArguments(
        output_dir=str(run_dir),
        max_steps=u.steps,
        per_device_train_batch_size=u.batch_size,
        gradient_accumulation_steps=u.gradient_accumulation_steps,
        lr_scheduler_type=u.lr_scheduler,
        warmup_steps=u.warmup_steps,
        max_grad_norm=u.max_grad_norm,
        seed=config.seed,
        save_strategy="steps" if u.save_steps else "no",
        save_steps=u.save_steps or 500,
        logging_strategy="no",
        report_to="none",
        disable_tqdm=not progress,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        bf16=u.bf16,
        use_cpu=not torch.cuda.is_available(),
    )
    settings = OptimizerSettings(
        u.lr, u.forget_lr, tuple(u.betas), tuple(u.plus_betas), u.eps, u.weight_decay
    )
    trainer = UnlearningTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=UnlearningCollator(tokenizer.pad_token_id),
        loss=loss,
        strategy=strategy,
        optimizer_settings=settings,
        schedule=AlternationSchedule(u.forget_freq, u.retain_freq),
        callbacks=[callback],
    )
    record: dict[str, Any] = {"loss": loss_name, "optimizer": strategy, "task": split.task}
    start = time.perf_counter()
    resume = u.save_steps > 0 and any(run_dir.glob("checkpoint-*"))
    try:
        trainer.train(resume_from_checkpoint=True if resume else None)
    except NonFiniteLossError as error:
        record["stopped"] = str(error)
    record["train_seconds"] = time.perf_counter() - start
    if "stopped" not in record:
        # the finished record replaces the checkpoints: resuming never needs them again
        shutil.rmtree(run_dir, ignore_errors=True)
    steps = dict(trainer.objective_log)  # optimizer step -> objective
    record["optimizer_steps"] = {k: list(steps.values()).count(k) for k in ("forget", "retain", "joint")}
    record["history"] = callback.history
    if "stopped" in record:
        record["seconds"] = record["train_seconds"]
        return record
    model.eval()
    raw = _evaluate(config, model, tokenizer, eval_sets, progress)
    scored = _score(
        config,
        raw,
        reference["target_generations"],
        embedder,
        embedder_reason,
        reference.get("retain_truth_ratios"),
        loss,
        reference.get("retain_reason"),
    )
    record.update(scored)
    record["seconds"] = time.perf_counter() - start
    return record


def _slug(name: str) -> str:
    return name.replace("+", "plus").replace("/", "-")


# --------------------------------------------------------------------------- summary


def summarise(config: TofuConfig, out: Path, seconds: float, model_log: dict[str, Any]) -> dict[str, Any]:
    """``results.json``: one row per (loss, strategy) with mean ± std (ddof 0) over tasks."""
    rows = []
    references: dict[str, list[dict[str, Any]]] = {"target": [], "retain model": []}
    for task in config.tasks:
        ref_path = out / "tasks" / f"task{task}" / "reference.json"
        if ref_path.is_file():
            ref = read_json(ref_path)
            references["target"].append({"task": task, **ref["target"]})
            if ref.get("retain_model_log"):
                model_log = {**model_log, f"retain task {task}": ref["retain_model_log"]}
            if ref.get("retain_model"):
                references["retain model"].append({"task": task, **ref["retain_model"]})
    for name, records in references.items():
        if records:
            rows.append(_row(name, "-", records))
    for loss in config.losses:
        for strategy in config.strategies:
            records = []
            for task in config.tasks:
                path = out / "tasks" / f"task{task}" / f"{_slug(loss)}__{_slug(strategy)}.json"
                if path.is_file():
                    records.append(read_json(path))
            if records:
                rows.append(_row(loss, strategy, records))
    # compute time of every piece, whichever invocation (first run or resume) computed it
    pieces = [r["seconds"] for name, records in references.items() for r in records]
    pieces += [
        task.get("seconds") or 0.0
        for row in rows
        if row["optimizer"] != "-"
        for task in row["tasks"].values()
    ]
    pieces += [log.get("seconds", 0.0) for log in model_log.values() if isinstance(log, dict)]
    return {
        "benchmark": "tofu",
        "compute_seconds": float(sum(pieces)),
        "split": config.data.split,
        "tasks": config.tasks,
        "rows": rows,
        "summary_metrics": list(SUMMARY_METRICS),
        "notes": _notes(config),
        "seconds": seconds,
        "models": model_log,
        "environment": _environment(),
        "config": asdict(config),
    }


def _row(loss: str, optimizer: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [r for r in records if "metrics" in r]
    stopped = {r["task"]: r["stopped"] for r in records if "stopped" in r}
    names = list(dict.fromkeys(name for r in finished for name in r["metrics"]))
    metrics: dict[str, Any] = {}
    absent: dict[str, str] = {}
    for name in names:
        values = [r["metrics"].get(name) for r in finished]
        if any(v is None for v in values) or not values:
            metrics[name] = None
            absent[name] = next(
                (r["absent"][name] for r in finished if name in r.get("absent", {})), "absent"
            )
        else:
            metrics[name] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return {
        "loss": loss,
        "optimizer": optimizer,
        "metrics": metrics,
        "absent": absent,
        "seconds": float(np.mean([r.get("seconds", 0.0) for r in records])),
        "tasks": {
            r["task"]: {"metrics": r.get("metrics"), "seconds": r.get("seconds"), "stopped": r.get("stopped")}
            for r in records
        },
        "stopped": stopped,
        "aggregates": finished[0].get("aggregates") if finished else None,
        "history": {r["task"]: r.get("history", []) for r in records},
    }


def _notes(config: TofuConfig) -> list[str]:
    notes = [
        "Entailment and IDK-Entailment are absent: they need an NLI model, which cannot be loaded offline here.",
        "Forget Quality is a KS-test p-value (higher = closer to the model trained without the forget set).",
        "Tasks play the role of seeds: each is a different forget set; mean ± std (ddof 0) over tasks.",
    ]
    if config.model.kind == "tiny":
        notes.append(
            "tofu-tiny: Model Utility and MU use the retain set only; real authors and world facts are "
            "not evaluated because a tiny model trained from scratch on TOFU never saw them."
        )
    return notes


def _environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = None
    import transformers

    return {
        "commit": commit,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": torch.get_num_threads(),
    }


def load_results(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
