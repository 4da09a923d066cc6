"""The TOFU results.json: per-run records -> one row per (loss, strategy), after the two references.

The top level is the envelope of every task (:func:`dualoptim.runs.envelope`); this task adds
``split``, ``tasks``, ``seeds``, ``std`` (the convention of every ± in it: the sample std over
the runs of a row, as the LLM papers' scripts compute it), ``compute_seconds``, ``models`` and
``notes``. Each row holds ``loss``, ``strategy``, ``metrics.<name>.{mean,std}``, ``absent``
(metric -> reason), ``seconds``, ``runs`` (one entry per task and seed), ``stopped`` and the
components each aggregate used.

The first row, ``target``, is the do-nothing control (``docs/design.md`` §4.3): the model before
unlearning, evaluated on every task's sets like a run and scored as an untargeted run is (OVR from
UFE). ``do_nothing`` holds its scores both ways, ``untargeted`` and ``targeted`` (OVR from TFE, what
an IDK or DPO row is compared with), per run and as mean ± std; every unlearning row's
``unlearning_check`` says whether its forget-set ROUGE and Probability stayed within seed noise of
the target's (``did_not_unlearn``). :func:`with_controls` computes both from the rows, so results
written before they existed get them too.
"""

from __future__ import annotations

import copy
from typing import Any

from dualoptim.config import to_dict
from dualoptim.llm.config import TASK, TofuConfig
from dualoptim.metrics.aggregate import STD_NAMES, mean_std, metrics_over_runs, unlearning_check
from dualoptim.runs import envelope

__all__ = [
    "DDOF",
    "DO_NOTHING",
    "FORGET_SIDE",
    "NOISE_FLOOR",
    "SUMMARY_METRICS",
    "build_results",
    "is_targeted",
    "score_do_nothing",
    "with_controls",
]

SUMMARY_METRICS = ("UFE", "TFE", "MU", "OVR", "Forget Quality", "Model Utility")
#: the LLM papers' scripts report the sample std over tasks
DDOF = 1
#: the row of the model before unlearning (its name in results.json since the first version)
DO_NOTHING = "target"
#: what the did-not-unlearn check compares: does the model still reproduce the forget answers?
FORGET_SIDE = ("forget/ROUGE", "forget/Probability")
#: the smallest move of those (fractions in [0, 1]: 0.01 is one point) that counts when runs give no spread
NOISE_FLOOR = 0.01
#: the closer-look scores the do-nothing control carries, each way
CONTROL_SCORES = ("OVR", "UFE", "TFE", "MU")


def is_targeted(loss: str) -> bool:
    """IDK- and DPO-style forget losses are scored with TFE (targeted), the others with UFE."""
    from dualoptim.llm.losses import UnlearningLoss

    return UnlearningLoss(loss).targeted


def score_do_nothing(metrics: dict[str, Any], targeted: bool, dataset: str) -> dict[str, float | None]:
    """The closer-look MU, UFE, TFE and OVR of one evaluation, scored as a targeted or untargeted run.

    ``metrics`` are one run's stored values (``"<set>/<name>"``); they are regrouped per set and
    aggregated by :func:`dualoptim.llm.metrics.closer_look`, the function a run's own scores come
    from, over the same utility sets, so the untargeted scores equal the stored ones.
    """
    from dualoptim.llm.data import DATASETS
    from dualoptim.llm.metrics import closer_look

    per_set: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if "/" in key and not key.startswith("downstream/"):
            set_name, name = key.split("/", 1)
            per_set.setdefault(set_name, {})[name] = value
    aggregates = closer_look(per_set, targeted, None, DATASETS[dataset][1:])
    return {name: aggregates[name].value for name in CONTROL_SCORES}


def _summary(values: list[float | None]) -> dict[str, float | None] | None:
    if not values or any(v is None for v in values):
        return None
    return dict(zip(("mean", "std"), mean_std(values, DDOF)))


def with_controls(results: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``results`` with ``do_nothing`` (the target scored both ways) and every row's check.

    Without a target row (no reference was evaluated), ``do_nothing`` is None and the rows are
    unchecked (``did_not_unlearn`` None); the input is not modified.
    """
    results = copy.deepcopy(results)
    target = next((r for r in results["rows"] if r["loss"] == DO_NOTHING and r.get("strategy") == "-"), None)
    if target is None or not target.get("runs"):
        results["do_nothing"] = None
        for row in results["rows"]:
            row.setdefault("did_not_unlearn", None)
        return results
    dataset = results.get("dataset", "tofu")
    control: dict[str, Any] = {}
    for kind, targeted in (("untargeted", False), ("targeted", True)):
        runs = [{"task": str(r["task"]), **score_do_nothing(r["metrics"], targeted, dataset)} for r in target["runs"]]
        control[kind] = {"runs": runs, "metrics": {n: _summary([r[n] for r in runs]) for n in CONTROL_SCORES}}
    results["do_nothing"] = control
    for row in results["rows"]:
        if row.get("strategy") == "-":
            continue
        check = unlearning_check(row.get("metrics") or {}, target["metrics"], FORGET_SIDE, NOISE_FLOOR)
        row["unlearning_check"] = check
        row["did_not_unlearn"] = check["did_not_unlearn"]
    return results


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
    results = envelope(
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
    return with_controls(results)
