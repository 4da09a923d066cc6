"""Downstream utility of an (unlearned) causal LM through EleutherAI's ``lm-eval`` harness.

The real-person and safety tasks of DualOptim+ (and the "closer look" study before it) report
what unlearning costs a general model on five standard benchmarks, each with the number the
reference code reads from ``lm-eval``'s results (``real_world_eval.summary_results``):

=================  ================================  =======================================
task               metric (lm-eval key)              what it is
=================  ================================  =======================================
arc_challenge      ``acc_norm,none``                 ARC-Challenge, length-normalised accuracy
mmlu               ``acc,none``                      MMLU, accuracy (group, weighted by size)
truthfulqa_mc1     ``acc,none``                      TruthfulQA MC1, accuracy
triviaqa           ``exact_match,remove_whitespace`` TriviaQA, exact match (generation)
gsm8k              ``exact_match,flexible-extract``  GSM8K, exact match of the last number
=================  ================================  =======================================

Each value is returned in percent. ``lm-eval`` is an optional extra (``pip install
dualoptim[eval]``); without it, or when a task's data cannot be loaded (no network and nothing
in the ``datasets`` cache: set ``HF_DATASETS_OFFLINE=1`` / ``HF_HUB_OFFLINE=1`` offline, or the
hub is retried for about 30 s per task), the value is ``None`` with the reason, never 0.

The reference runs ``lm_eval --model hf --model_args pretrained=...,add_bos_token=True`` with each
task's default few-shot setting and no chat template; :func:`downstream_utility` does the same
through the Python API on a model already in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DOWNSTREAM_TASKS", "check_tasks", "downstream_utility"]

#: lm-eval task -> the ``"<metric>,<filter>"`` key of its results the papers report
DOWNSTREAM_TASKS: dict[str, str] = {
    "arc_challenge": "acc_norm,none",
    "mmlu": "acc,none",
    "truthfulqa_mc1": "acc,none",
    "triviaqa": "exact_match,remove_whitespace",
    "gsm8k": "exact_match,flexible-extract",
}


def check_tasks(tasks: Sequence[str], metrics: Mapping[str, str] | None = None) -> dict[str, str]:
    """``task -> metric key`` of each requested task; an unknown name is a ``ValueError`` naming it
    and the known ones (checked before ``lm-eval`` is imported, so it fails the same without it)."""
    known = {**DOWNSTREAM_TASKS, **(metrics or {})}
    if isinstance(tasks, str):
        tasks = [tasks]
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"unknown downstream task {unknown[0]!r}; known: {', '.join(known)}")
    return {task: known[task] for task in tasks}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def downstream_utility(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str],
    *,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    include_path: str | Path | None = None,
    metrics: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``model`` on each of ``tasks`` with ``lm-eval``.

    Returns ``{task: {"value": percent or None, "metric": key, "reason": None or why absent}}``.
    ``limit``: first N documents of each task (a smoke test; the papers use every document).
    ``include_path`` + ``metrics``: tasks of your own (lm-eval YAML files in that folder) and the
    result key each reports, beside the five above. The model is moved to ``device`` and evaluated
    in eval mode; its training mode is restored afterwards.
    """
    wanted = check_tasks(tasks, metrics)
    out: dict[str, dict[str, Any]] = {
        task: {"value": None, "metric": metric, "reason": None} for task, metric in wanted.items()
    }
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as error:
        for entry in out.values():
            entry["reason"] = f"lm-eval is not installed (pip install dualoptim[eval]): {_first_line(error)}"
        return out

    was_training = model.training
    model.to(device).eval()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, add_bos_token=True)
        manager = TaskManager(include_path=str(include_path) if include_path is not None else None)
        for task, metric in wanted.items():
            # Loading is where a task's data is fetched; a failure there (offline, no cache) makes
            # this task absent and leaves the others to run. Errors of the evaluation itself propagate.
            try:
                manager.load([task])
            except Exception as error:  # noqa: BLE001 - datasets raises many kinds (OSError, ConnectionError, ...)
                out[task]["reason"] = f"the data of {task!r} could not be loaded: {_first_line(error)}"
                continue
            results = lm_eval.simple_evaluate(
                model=lm, tasks=[task], task_manager=manager, limit=limit, bootstrap_iters=0, log_samples=False
            )
            value = (results or {}).get("results", {}).get(task, {}).get(metric)
            if value is None:
                out[task]["reason"] = f"lm-eval returned no {metric!r} for {task!r}"
            else:
                out[task]["value"] = 100.0 * float(value)
    finally:
        model.train(was_training)
    return out
