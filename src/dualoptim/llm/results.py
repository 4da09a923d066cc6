"""The TOFU results.json: per-run records -> one row per (loss, strategy), after the two references.

The top level is the envelope of every task (:func:`dualoptim.runs.envelope`); this task adds
``split``, ``tasks``, ``seeds``, ``std`` (the convention of every ± in it: the sample std over
the runs of a row, as the LLM papers' scripts compute it), ``compute_seconds``, ``models`` and
``notes``. Each row holds ``loss``, ``strategy``, ``metrics.<name>.{mean,std}``, ``absent``
(metric -> reason), ``seconds``, ``runs`` (one entry per task and seed), ``stopped`` and the
components each aggregate used.
"""

from __future__ import annotations

from typing import Any

from dualoptim.config import to_dict
from dualoptim.llm.config import TASK, TofuConfig
from dualoptim.metrics.aggregate import STD_NAMES, mean_std, metrics_over_runs
from dualoptim.runs import envelope

__all__ = ["DDOF", "SUMMARY_METRICS", "build_results"]

SUMMARY_METRICS = ("UFE", "TFE", "MU", "OVR", "Forget Quality", "Model Utility")
#: the LLM papers' scripts report the sample std over tasks
DDOF = 1


def _row(loss: str, strategy: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [r for r in records if "metrics" in r]
    metrics, absent = metrics_over_runs(records, DDOF)
    return {
        "loss": loss,
        "strategy": strategy,
        "metrics": metrics,
        "absent": absent,
        "seconds": mean_std([r.get("seconds") or 0.0 for r in records])[0],
        "runs": [
            {key: r.get(key) for key in ("task", "seed", "metrics", "seconds", "stopped", "optimizer_steps", "history", "losses")}
            for r in records
        ],
        "stopped": [{"task": r["task"], "seed": r.get("seed"), "reason": r["stopped"]} for r in records if "stopped" in r],
        "aggregates": finished[0].get("aggregates") if finished else None,
    }


def _notes(config: TofuConfig) -> list[str]:
    notes = [
        "Forget Quality is a KS-test p-value (higher = closer to the model trained without the forget set).",
        f"Tasks play the role of seeds: each is a different forget set; mean ± {STD_NAMES[DDOF]} over the "
        "runs of a row (tasks x seeds); a row of one run has no std.",
    ]
    if config.data.dataset == "real_world":
        notes.append(
            "real_world: unlearning trains on the forget people's `answer`s with the 400 neighbour rows as "
            f"the retain set; evaluation compares with `{config.data.eval_answer_key}`; Model Utility and "
            "MU are over the neighbour set (the reference's Model Utility)."
        )
        if config.model.kind == "tiny":
            notes.append(
                "real-world-tiny: the target is a small Llama trained from scratch on the 1,200 rows (forget "
                "+ both neighbour files), the retain model on the rows it must keep; it knows these people only "
                "from these rows, so it shows the pipeline and the strategies' trade-off, not what an 8B "
                "instruct model knows about them."
            )
    elif config.model.kind == "tiny":
        notes.append(
            "tofu-tiny: Model Utility and MU use the retain set only; real authors and world facts are "
            "not evaluated because a tiny model trained from scratch on TOFU never saw them."
        )
    return notes


def build_results(
    config: TofuConfig,
    references: dict[str, dict[str, Any]],
    records: list[dict[str, Any]],
    model_log: dict[str, Any],
    env: dict[str, Any],
    *,
    seconds: float,
) -> dict[str, Any]:
    """results.json from the per-task reference records and the unlearning records."""
    rows = []
    target = [{"task": task, **ref["target"]} for task, ref in references.items()]
    retain = [{"task": task, **ref["retain_model"]} for task, ref in references.items() if ref.get("retain_model")]
    models = dict(model_log)
    notes = _notes(config)
    for task, ref in references.items():
        if ref.get("retain_model_log"):
            models[f"retain task {task}"] = ref["retain_model_log"]
        check = ref.get("knowledge_check") or {}
        if not check.get("ok", True):
            notes.append(f"task {task}: {check['message']}")
    for name, refs in (("target", target), ("retain model", retain)):
        if refs:
            rows.append(_row(name, "-", refs))
    for loss in config.losses:
        for strategy in config.strategies:
            mine = [r for r in records if (r["loss"], r["strategy"]) == (loss, strategy)]
            if mine:
                rows.append(_row(loss, strategy, mine))
    # compute time of every piece, whichever invocation (first run or resume) computed it
    pieces = [r.get("seconds") or 0.0 for r in target + retain + records]
    pieces += [log.get("seconds", 0.0) for log in models.values() if isinstance(log, dict)]
    return envelope(
        TASK,
        to_dict(config),
        env,
        rows,
        seconds,
        split=config.data.split if config.data.dataset == "tofu" else config.data.dataset,
        dataset=config.data.dataset,
        tasks=list(config.tasks),
        seeds=list(config.seeds),
        std=STD_NAMES[DDOF],
        summary_metrics=list(SUMMARY_METRICS),
        compute_seconds=float(sum(pieces)),
        models=models,
        notes=notes,
        knowledge_checks={task: ref.get("knowledge_check") for task, ref in references.items()},
    )
