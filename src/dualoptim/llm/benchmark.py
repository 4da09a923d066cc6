"""The TOFU benchmark: every (task, loss, strategy, seed) unlearned, evaluated and summarised.

The same loop serves the real-person set (``data.dataset: real_world``): only the source, the
splits and the retain-side evaluation set (``neighbor`` instead of ``retain``) differ.

Layout of the output folder (the run store of :mod:`dualoptim.runs`)::

    config.yaml                                     the effective configuration
    runs/task<T>/reference.json                     target and retain-model evaluations of forget task T
    runs/task<T>/<LOSS>__<STRATEGY>__seed<S>.json   one finished unlearning run
    checkpoints/<run>-<key>/                        Trainer checkpoints of an unfinished run (save_steps)
    results.json, table.md, tofu_curves.png         generated from the records above

Each run is resolved once into a frozen :class:`TofuRun` before any work starts; its record is
written atomically the moment it finishes, keyed by everything that determines it, so an
interrupted benchmark resumes where it stopped and a changed setting reruns only what it changes.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualoptim.config import to_dict
from dualoptim.devices import resolve_device, set_threads
from dualoptim.errors import NonFiniteLoss
from dualoptim.io import write_json_atomic
from dualoptim.llm import evaluate as E
from dualoptim.llm import metrics as M
from dualoptim.llm.config import (
    TofuConfig,
    UnlearnSection,
    forget_lr_of,
    optimizer_settings,
    schedule,
    section_of,
    validate,
)
from dualoptim.llm.data import (
    DATASETS,
    TofuSplit,
    UnlearningCollator,
    UnlearningDataset,
    all_rows,
    load_split,
    make_source,
)
from dualoptim.llm.losses import UnlearningLoss
from dualoptim.paths import default_cache_dir
from dualoptim.runs import environment, open_output, slug, stable_hash
from dualoptim.schedule import Schedule
from dualoptim.strategies import OptimizerSettings

__all__ = ["KnowledgeWarning", "Models", "TofuBenchmark", "TofuRun", "knowledge_check", "run_benchmark"]

TINY_SET_REASON = (
    "not evaluated: the tiny model never saw real authors or world facts, so utility there is meaningless"
)


class KnowledgeWarning(UserWarning):
    """The target does not know the forget set: unlearning it would measure nothing."""


def knowledge_check(
    target: dict[str, Any], retain: dict[str, Any] | None, rouge_margin: float, probability_ratio: float
) -> dict[str, Any]:
    """Does the target know the forget set before unlearning? Its forget ROUGE must exceed the
    retain model's (which never saw those rows) by ``rouge_margin`` and its forget Probability be
    ``probability_ratio`` times the retain model's; without a retain model, forget ROUGE >= 0.5.
    Returns the numbers, ``ok`` and, when not ok, a message that says what to do."""
    rouge, probability = target["forget/ROUGE"], target["forget/Probability"]
    check: dict[str, Any] = {"target forget ROUGE": rouge, "target forget Probability": probability}
    failed = []
    if retain is not None:
        base_rouge, base_probability = retain["forget/ROUGE"], retain["forget/Probability"]
        check["retain model forget ROUGE"], check["retain model forget Probability"] = base_rouge, base_probability
        if rouge < base_rouge + rouge_margin:
            failed.append(f"forget ROUGE {rouge:.3f} vs {base_rouge:.3f} for the retain model (needs +{rouge_margin})")
        if probability < probability_ratio * base_probability:
            failed.append(
                f"forget Probability {probability:.3g} vs {base_probability:.3g} for the retain model "
                f"(needs x{probability_ratio})"
            )
    elif rouge < 0.5:
        failed.append(f"forget ROUGE {rouge:.3f} (needs >= 0.5; no retain model to compare with)")
    check["ok"] = not failed
    if failed:
        check["message"] = (
            "THE TARGET DOES NOT KNOW THE FORGET SET: " + "; ".join(failed) + ". Unlearning it measures "
            "nothing: fine-tune the target on the task's rows first (model.finetune.enabled: true, or a longer "
            "model.tiny / model.finetune recipe)."
        )
    return check


@dataclass
class Models:
    """The target model (before unlearning), its tokenizer, and how they were obtained."""

    target: torch.nn.Module
    tokenizer: Any
    log: dict[str, Any]
    #: the rows the target was trained on: all 4,000 TOFU rows (tiny models, fine-tuning) or
    #: model.finetune.subset of them; None for a pretrained target loaded as it is
    rows: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class TofuRun:
    """One unlearning run, resolved once: what runs, with which settings, and the key of its record."""

    task: str
    loss: str
    strategy: str
    seed: int
    settings: OptimizerSettings
    schedule: Schedule
    #: the unlearning section the run reads (steps, batches, coefficients, clipping, curves)
    unlearn: UnlearnSection
    name: str
    key: str


@dataclass
class Scorer:
    """Turns a model's raw evaluation into metrics: per-set values, Forget Quality, MU, UFE, TFE, OVR."""

    config: TofuConfig
    judges: E.Judges
    set_reasons: dict[str, str] = field(default_factory=dict)
    #: the sets Model Utility and MU average over (tofu: retain, real authors, world facts; real_world: neighbor)
    utility_sets: tuple[str, ...] = M.SETS

    def score(
        self,
        raw: dict[str, dict[str, Any]],
        retain_truth_ratios: list[float] | None,
        loss: UnlearningLoss | None,
        retain_reason: str | None = None,
    ) -> dict[str, Any]:
        per_set = {name: E.set_metrics(name, raw_set, self.judges) for name, raw_set in raw.items()}
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
        targeted = loss.targeted if loss is not None else False
        aggregates = {
            "Model Utility": M.model_utility(per_set, self.set_reasons, self.utility_sets),
            **M.closer_look(per_set, targeted, self.set_reasons, self.utility_sets),
        }
        for name, aggregate in aggregates.items():
            metrics[name] = aggregate.value
            if aggregate.value is None:
                absent[name] = f"no component present: {aggregate.absent}"
        forget = raw["forget"]
        return {
            "metrics": metrics,
            "absent": absent,
            "aggregates": {name: a.to_json() for name, a in aggregates.items()},
            "examples": [
                {"question": q, "answer": a, "generation": g}
                for q, a, g in list(zip(forget["questions"], forget["answers"], forget["generations"]))[:3]
            ],
        }


class TofuBenchmark:
    """Everything a TOFU benchmark needs, built once: data source, target model, embedder."""

    def __init__(self, config: TofuConfig, *, progress: bool = True, command: list[str] | None = None) -> None:
        validate(config)
        set_threads(config.threads)
        self.config = config
        self.started = environment(command)  # provenance of the code that runs, taken now
        self.progress = progress
        self.device = resolve_device(config.device)
        self.cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        d = config.data
        self.source = make_source(d.dataset, d.path, hub=d.source == "hub", idk_path=d.idk_path)
        # Splits first: a bad split or task fails here, before any model is trained.
        self.splits = {task: load_split(self.source, d.split, task, d.eval_answer_key) for task in config.tasks}
        self.models = self._load_models()
        judges = E.Judges.load(config.data.embedder, config.data.nli_model)
        set_reasons = {}
        if config.model.kind == "tiny" and d.dataset == "tofu":
            set_reasons = {s: TINY_SET_REASON for s in ("real_authors", "world_facts")}
        #: the retain-side evaluation set (its Probability is the curve beside the forget set's)
        self.retain_set = DATASETS[d.dataset][1]
        self.scorer = Scorer(config, judges, set_reasons, DATASETS[d.dataset][1:])
        self._datasets: dict[tuple[str, int], UnlearningDataset] = {}
        #: downstream task -> why it is absent, once known (no lm-eval, data not loadable): not retried per model
        self._downstream_absent: dict[str, str] = {}
        # reference records by key: a sweep writes the same ones into each factor's folder, computed once
        self._references: dict[str, dict[str, Any]] = {}

    # -- models -----------------------------------------------------------------------------------------
    def _load_models(self) -> Models:
        from dualoptim.llm.models import (
            finetune_subset,
            finetuned_model,
            load_pretrained,
            load_tokenizer,
            tiny_model,
            tiny_tokenizer,
        )

        cfg = self.config
        if cfg.model.kind == "pretrained":
            tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.pad_token)
            cfg.data.format.uses_chat_template(tokenizer)  # a switch the tokenizer cannot honour fails now
            if not cfg.model.finetune.enabled:
                model, tokenizer = load_pretrained(cfg.model.name_or_path, cfg.model.dtype, cfg.model.pad_token)
                return Models(model.to(self.device), tokenizer, {"target": cfg.model.name_or_path})
            # a base model: fine-tune it on all 4,000 rows first, as the TOFU authors did (cached), or on
            # a subset that keeps every forget row of the tasks run (the target must know what it unlearns)
            rows = all_rows(self.source)
            subset = cfg.model.finetune.subset
            if subset is not None:
                forget = [row for split in self.splits.values() for row in split.forget]
                rows = finetune_subset(rows, forget, subset, cfg.model.seed)
            target, log = finetuned_model(
                "target", cfg.model.name_or_path, rows, tokenizer, cfg.data.format, cfg.model.finetune,
                cfg.model.dtype, cfg.data.max_length, self.cache, cfg.model.seed, self.progress, self.device,
            )  # fmt: skip
            return Models(target.to(self.device), tokenizer, {"target": log}, rows)
        rows = all_rows(self.source)
        tokenizer = tiny_tokenizer([f"{r['question']} {r['answer']}" for r in rows], cfg.model.tiny, self.cache)
        target, log = tiny_model(
            "target", rows, tokenizer, cfg.data.format, cfg.model.tiny, cfg.data.max_length, self.cache,
            cfg.model.seed, self.progress,
        )  # fmt: skip
        return Models(target.to(self.device), tokenizer, {"target": log}, rows)

    def _retain_model(self, split: TofuSplit) -> tuple[torch.nn.Module | None, str | None, dict | None]:
        """The model trained without the forget rows, or ``(None, reason, None)``."""
        from dualoptim.llm.models import finetuned_model, load_pretrained, tiny_model

        cfg = self.config
        if cfg.model.retain_tasks is not None and split.task not in cfg.model.retain_tasks:
            return None, f"no retain model for task {split.task} (model.retain_tasks: {cfg.model.retain_tasks})", None
        if cfg.model.kind == "tiny":
            model, log = tiny_model(
                f"retain-{split.split}-task{split.task}", split.reference_rows, self.models.tokenizer, cfg.data.format,
                cfg.model.tiny, cfg.data.max_length, self.cache, cfg.model.seed, self.progress,
            )  # fmt: skip
            return model.to(self.device), None, log
        path = cfg.model.retain_model.get(split.split)
        if path is None and cfg.model.finetune.enabled:
            # the base fine-tuned on this task's retain rows only: the reference of Forget Quality
            rows = split.reference_rows
            if cfg.model.finetune.subset is not None:
                # the target's subset minus this task's forget rows: both models saw the same retain rows
                trained = {(row["question"], row["answer"]) for row in self.models.rows}
                rows = [row for row in rows if (row["question"], row["answer"]) in trained]
                if not rows:
                    return None, (
                        f"no retain model for task {split.task}: model.finetune.subset {cfg.model.finetune.subset} "
                        "holds no row but the task's forget rows"
                    ), None
            model, log = finetuned_model(
                f"retain-{split.split}-task{split.task}", cfg.model.name_or_path, rows, self.models.tokenizer,
                cfg.data.format, cfg.model.finetune, cfg.model.dtype, cfg.data.max_length, self.cache,
                cfg.model.seed, self.progress, self.device,
            )  # fmt: skip
            return model.to(self.device), None, log
        if path is None:
            return None, f"no retain model configured for {split.split} (model.retain_model.{split.split})", None
        model, _ = load_pretrained(path, cfg.model.dtype, cfg.model.pad_token)
        return model.to(self.device), None, {"path": path}

    # -- evaluation -----------------------------------------------------------------------------------
    def eval_sets(self, split: TofuSplit) -> dict[str, list[dict[str, Any]]]:
        return {name: split.eval_sets[name][: self.config.data.eval_size] for name in self.config.data.eval_sets}

    def raw_evaluation(
        self, model: torch.nn.Module, eval_sets: dict[str, list], split: TofuSplit
    ) -> dict[str, dict[str, Any]]:
        d = self.config.data
        return E.evaluate_model(
            model, self.models.tokenizer, d.format, eval_sets, d.max_length, d.max_new_tokens,
            d.eval_batch_size, self.progress, idk=split.idk,
        )  # fmt: skip

    # -- the runs, resolved once ------------------------------------------------------------------------
    def _fixed_part(self) -> dict[str, Any]:
        """What every record of this config depends on (not the lists of runs to make)."""
        cfg = self.config
        model = to_dict(cfg.model)
        if model["retain_tasks"] is None:
            del model["retain_tasks"]  # every task has a retain model: the keys records had before the option
        if model["finetune"]["subset"] is None:
            del model["finetune"]["subset"]  # fine-tuning on every row: the keys records had before subsets
        else:
            # the subset keeps the forget rows of every task run, so the target depends on the task list
            model["finetune"]["subset_tasks"] = sorted(str(task) for task in cfg.tasks)
        data = to_dict(cfg.data)
        if cfg.data.dataset == "tofu":
            # TOFU keeps the run keys it had before the real-person set (these options do not touch it)
            for key in ("dataset", "eval_answer_key", "idk_path"):
                del data[key]
        if not cfg.data.downstream:
            # nor do the downstream options when no downstream task is asked for
            del data["downstream"], data["downstream_limit"]
        return {"model": model, "data": data}

    def reference_key(self, task: str) -> str:
        return stable_hash({**self._fixed_part(), "task": task, "record": "reference"})

    def plan(self, task: str) -> list[TofuRun]:
        """Every (loss, strategy, seed) run of ``task``, each resolved into a frozen :class:`TofuRun`."""
        cfg = self.config
        settings, alternation = optimizer_settings(cfg), schedule(cfg)
        # checkpointing (of a crashed run, or of activations) changes how a run survives and what it
        # holds in memory, not its result
        # the per-pair rates enter a run's key as the one rate that run uses
        # the joint section enters a joint run's key as the values it changes (section_of)
        excluded = ("save_steps", "gradient_checkpointing", "forget_lrs", "lrs", "joint")
        runs = []
        for loss in cfg.losses:
            for strategy in cfg.strategies:
                rate = forget_lr_of(cfg, loss, strategy)
                section = section_of(cfg, strategy, rate)
                unlearn = {k: v for k, v in to_dict(section).items() if k not in excluded}
                if not section.lora.enabled:
                    del unlearn["lora"]  # full fine-tuning keeps the run keys it had before adapters existed
                for seed in cfg.seeds:
                    key = stable_hash(
                        {**self._fixed_part(), "unlearn": unlearn, "task": task,
                         "loss": loss, "strategy": strategy, "seed": seed}
                    )  # fmt: skip
                    name = f"task{task}/{slug(loss)}__{slug(strategy)}__seed{seed}"
                    runs.append(TofuRun(
                        task, loss, strategy, seed, dataclasses.replace(settings, forget_lr=rate, retain_lr=section.lr),
                        alternation,
                        copy.deepcopy(section), name, key,
                    ))  # fmt: skip
        return runs

    def reference(self, task: str) -> dict[str, Any]:
        """Evaluations of the target (before unlearning) and of the retain model on ``task``."""
        key = self.reference_key(task)
        if key not in self._references:
            self._references[key] = self._evaluate_references(task)
        return copy.deepcopy(self._references[key])

    def _evaluate_references(self, task: str) -> dict[str, Any]:
        split = self.splits[task]
        eval_sets = self.eval_sets(split)
        start = time.perf_counter()
        target_raw = self.raw_evaluation(self.models.target, eval_sets, split)
        target_seconds = time.perf_counter() - start
        generations = {name: raw["generations"] for name, raw in target_raw.items()}
        record: dict[str, Any] = {"task": task, "target_generations": generations}
        retain_model, reason, retain_log = self._retain_model(split)
        record["retain_model_log"] = retain_log
        ratios = None
        if retain_model is not None:
            start = time.perf_counter()
            retain_raw = self.raw_evaluation(retain_model, eval_sets, split)
            ratios = E.truth_ratios(retain_raw["forget"])
            record["retain_model"] = self.scorer.score(retain_raw, ratios, None)
            record["retain_model"]["seconds"] = time.perf_counter() - start
        record["retain_truth_ratios"] = ratios
        record["target"] = self.scorer.score(target_raw, ratios, None, reason)
        self.add_downstream(record["target"], self.models.target)
        record["target"]["seconds"] = target_seconds
        record["retain_reason"] = reason
        f = self.config.model.finetune
        record["knowledge_check"] = knowledge_check(
            record["target"]["metrics"], record.get("retain_model", {}).get("metrics"),
            f.check_rouge_margin, f.check_probability_ratio,
        )  # fmt: skip
        return record

    def add_downstream(self, scored: dict[str, Any], model: torch.nn.Module) -> None:
        """Downstream utility (``data.downstream``, through lm-eval) into a scored record's metrics:
        ``downstream/<task>`` in percent and ``Downstream AVG`` (their mean, absent unless every task is
        present, as the papers average all five); an absent task carries its reason."""
        tasks = self.config.data.downstream
        if not tasks:
            return
        from dualoptim.llm.downstream import downstream_utility

        d = self.config.data
        known = {t: {"value": None, "reason": r} for t, r in self._downstream_absent.items() if t in tasks}
        wanted = [t for t in tasks if t not in known]
        found = downstream_utility(
            model, self.models.tokenizer, wanted, limit=d.downstream_limit, batch_size=d.eval_batch_size,
            device=str(self.device),
        ) if wanted else {}  # fmt: skip
        results = {**known, **found}
        metrics, absent = scored["metrics"], scored["absent"]
        for task in tasks:
            value, reason = results[task]["value"], results[task]["reason"]
            metrics[f"downstream/{task}"] = value
            if value is None:
                absent[f"downstream/{task}"] = reason
                self._downstream_absent[task] = reason  # the same for every later model
        values = [metrics[f"downstream/{t}"] for t in tasks]
        metrics["Downstream AVG"] = float(np.mean(values)) if all(v is not None for v in values) else None
        if metrics["Downstream AVG"] is None:
            absent["Downstream AVG"] = "a downstream task is absent: " + ", ".join(
                t for t in tasks if metrics[f"downstream/{t}"] is None
            )

    def _dataset(self, task: str, seed: int) -> UnlearningDataset:
        """The tokenised forget/retain pairs of a task, made once per (task, seed) and shared by its runs."""
        if (task, seed) not in self._datasets:
            d = self.config.data
            self._datasets[(task, seed)] = UnlearningDataset(
                self.models.tokenizer, self.splits[task], d.format, d.max_length, seed
            )
        return self._datasets[(task, seed)]

    def _trajectory(self, eval_sets: dict[str, list], size: int):
        """forget/retain Probability on ``size`` items: the curve recorded along the run."""
        cfg = self.config
        sets = {n: eval_sets[n][:size] for n in ("forget", self.retain_set) if n in eval_sets}

        def curve(model: torch.nn.Module) -> dict[str, float | None]:
            values = {}
            for name, rows in sets.items():
                nlls = E.answer_nlls(
                    model, self.models.tokenizer, cfg.data.format, [(r["question"], r["answer"]) for r in rows],
                    cfg.data.max_length, cfg.data.eval_batch_size,
                )  # fmt: skip
                value = float(np.mean([M.probability(n) for n in nlls]))
                # a diverged model gives NaN: JSON has no NaN, and the stop reason is recorded anyway
                values[f"{name}/Probability"] = value if np.isfinite(value) else None
            return values

        return curve

    def unlearn_one(self, run: TofuRun, reference: dict[str, Any], checkpoints: Path) -> dict[str, Any]:
        """Unlearn one resolved run with the Trainer, evaluate, and return the record."""
        from transformers import TrainingArguments

        from dualoptim.llm.trainer import TrajectoryCallback, UnlearningTrainer

        u = run.unlearn
        tokenizer = self.models.tokenizer
        loss = UnlearningLoss(run.loss, u.forget_coeff, u.regularization_coeff, u.beta)
        eval_sets = self.eval_sets(self.splits[run.task])
        model = copy.deepcopy(self.models.target)
        if u.lora.enabled:
            from dualoptim.llm.models import apply_lora

            # only the adapters train; the frozen base needs no gradient, state or master copy
            model = apply_lora(model, u.lora.r, u.lora.alpha, u.lora.dropout, u.lora.target_modules)
            if u.gradient_checkpointing:
                # a checkpointed block must see an input that needs a gradient, or the adapters in it get none
                model.enable_input_require_grads()
        model.train()
        callback = TrajectoryCallback(self._trajectory(eval_sets, u.trajectory_size), u.eval_every)
        run_dir = checkpoints / f"{run.name.replace('/', '__')}-{run.key}"
        args = TrainingArguments(
            output_dir=str(run_dir), max_steps=u.steps, per_device_train_batch_size=u.batch_size,
            gradient_accumulation_steps=u.gradient_accumulation_steps, lr_scheduler_type=u.lr_scheduler,
            warmup_steps=u.warmup_steps, max_grad_norm=u.max_grad_norm, seed=run.seed,
            save_strategy="steps" if u.save_steps else "no", save_steps=u.save_steps or 500,
            logging_strategy="steps", logging_steps=u.eval_every, report_to="none", disable_tqdm=not self.progress,
            dataloader_pin_memory=False, remove_unused_columns=False, bf16=u.bf16,
            use_cpu=self.device.type == "cpu", **_checkpointing(u.gradient_checkpointing),
        )  # fmt: skip
        trainer = UnlearningTrainer(
            model=model, args=args, train_dataset=self._dataset(run.task, run.seed),
            data_collator=UnlearningCollator(tokenizer.pad_token_id), loss=loss, strategy=run.strategy,
            optimizer_settings=run.settings, schedule=run.schedule, callbacks=[callback],
        )  # fmt: skip
        record: dict[str, Any] = {"loss": run.loss, "strategy": run.strategy, "task": run.task, "seed": run.seed,
                                  "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
        start = time.perf_counter()
        resume = u.save_steps > 0 and any(run_dir.glob("checkpoint-*"))
        try:
            trainer.train(resume_from_checkpoint=True if resume else None)
        except NonFiniteLoss as error:
            record["stopped"] = str(error)
        record["train_seconds"] = time.perf_counter() - start
        if "stopped" not in record:
            # the finished record replaces the checkpoints: resuming never needs them again
            shutil.rmtree(run_dir, ignore_errors=True)
        steps = dict(trainer.objective_log)  # optimizer step -> objective
        record["optimizer_steps"] = {k: list(steps.values()).count(k) for k in ("forget", "retain", "joint")}
        record["history"] = callback.history
        record["losses"] = trainer.loss_history()  # forget and retain loss of every optimizer step
        if "stopped" in record:
            record["seconds"] = record["train_seconds"]
            return record
        model.eval()
        scored = self.scorer.score(
            self.raw_evaluation(model, eval_sets, self.splits[run.task]),
            reference.get("retain_truth_ratios"), loss, reference.get("retain_reason"),
        )  # fmt: skip
        record.update(scored)
        self.add_downstream(record, model)
        record["seconds"] = time.perf_counter() - start
        return record

    # -- the whole benchmark ------------------------------------------------------------------------------
    def run(self, out: str | Path) -> dict[str, Any]:
        """Run (or resume) every run into ``out``; write results.json, table.md and the curves."""
        from tqdm.auto import tqdm

        from dualoptim.llm.report import write_report
        from dualoptim.llm.results import build_results

        cfg = self.config
        out = Path(out)
        started = time.perf_counter()
        env = self.started
        store = open_output(out, to_dict(cfg), env)
        plans = {task: self.plan(task) for task in cfg.tasks}
        references, records = {}, []
        bar = tqdm(total=sum(len(p) for p in plans.values()), desc="tofu runs", disable=not self.progress)
        for task, runs in plans.items():
            references[task], _ = store.get_or_run(
                f"task{task}/reference", self.reference_key(task), lambda task=task: self.reference(task)
            )
            check = references[task].get("knowledge_check") or {}
            if not check.get("ok", True):
                # before any unlearning, and on a resume too: results on an ignorant target mean nothing
                warnings.warn(f"task {task}: {check['message']}", KnowledgeWarning, stacklevel=2)
            for run in runs:
                bar.set_postfix_str(f"task {task} {run.loss} {run.strategy} seed {run.seed}")
                record, _ = store.get_or_run(
                    run.name, run.key,
                    lambda run=run: self.unlearn_one(run, references[run.task], out / "checkpoints"),
                )  # fmt: skip
                records.append(record)
                bar.update(1)
        bar.close()
        results = build_results(
            cfg, references, records, self.models.log, env, seconds=time.perf_counter() - started
        )
        write_json_atomic(out / "results.json", results)
        write_report(results, out)
        return results


def _checkpointing(enabled: bool) -> dict[str, Any]:
    """TrainingArguments of activation recomputation, under the name this transformers uses
    (``activation_checkpointing`` since 5.x, ``gradient_checkpointing`` before)."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False}} if enabled else {}


def run_benchmark(
    config: TofuConfig, out: str | Path, progress: bool = True, command: list[str] | None = None
) -> dict[str, Any]:
    """Run (or resume) the whole benchmark into ``out`` and return ``results.json``'s content."""
    return TofuBenchmark(config, progress=progress, command=command).run(out)
