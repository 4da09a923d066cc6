"""The audit of one deletion request: what was asked and done, before/after evidence, verdicts.

A task measures each set (forget, retain, held-out) with the model before and after unlearning
as :class:`SetScores`; :func:`build_audit` turns them into the audit (``docs/design.md`` §7) and
:func:`write_audit` writes ``audit.json``, ``audit.md`` and the plots. The same code audits image
classifiers and language models, and a single model as it is (``dualoptim audit`` without the
model before: ``before=None``).

The headline evidence is the forget set against the held-out control: the difference of
differences of per-example loss and of the headline metric between before and after, then the
membership attack on the model after. Each criterion is PASSED, FAILED or INCONCLUSIVE, read from
its 95% interval (:mod:`~dualoptim.audit.requirements`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dualoptim.audit.requirements import (
    CRITERIA,
    DEFAULT_REQUIREMENTS,
    SINGLE_MODEL_REQUIREMENTS,
    Requirement,
    judge,
    overall,
)
from dualoptim.audit.stats import (
    Effect,
    difference_of_differences,
    mean_change,
    mean_difference,
    membership_auc,
    two_sample_ks,
)
from dualoptim.io import write_json_atomic, write_text_atomic

__all__ = ["MIN_EXAMPLES", "SETS", "SetScores", "build_audit", "exit_status", "render_markdown", "scores_from_json",
           "scores_to_json", "write_audit"]

SETS = ("forget", "retain", "heldout")
#: fewer examples than this in the forget or held-out set: every statistical criterion is INCONCLUSIVE
MIN_EXAMPLES = 10
HELDOUT_MEANING = "data not in the forget or retain sets"


@dataclass
class SetScores:
    """One model on one set: summary metrics and per-example values.

    ``metrics`` are percentages (accuracy; answer probability, ROUGE); ``loss`` is the per-example
    loss; ``attacks`` maps a membership-inference attack to its per-example score, higher = "member";
    ``per_example`` maps a metric to its per-example values (percent), whose mean is the metric.
    """

    metrics: dict[str, float]
    loss: np.ndarray
    attacks: dict[str, np.ndarray] = field(default_factory=dict)
    per_example: dict[str, np.ndarray] = field(default_factory=dict)
    #: further task-specific results reported with the set (paraphrases, ...)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.loss)

    def values(self, metric: str) -> np.ndarray:
        """Per-example values of ``metric`` (a constant array of the mean when only the mean is known)."""
        if metric in self.per_example:
            return np.asarray(self.per_example[metric], dtype=np.float64)
        return np.full(self.size, float(self.metrics[metric]))


def scores_to_json(scores: SetScores) -> dict[str, Any]:
    """:class:`SetScores` as JSON (a cache of the "before" scores of a resumable request)."""
    return {"metrics": scores.metrics, "loss": scores.loss.tolist(), "extra": scores.extra,
            "attacks": {k: np.asarray(v).tolist() for k, v in scores.attacks.items()},
            "per_example": {k: np.asarray(v).tolist() for k, v in scores.per_example.items()}}  # fmt: skip


def scores_from_json(data: Mapping[str, Any]) -> SetScores:
    """The inverse of :func:`scores_to_json`."""
    return SetScores(dict(data["metrics"]), np.asarray(data["loss"], dtype=np.float64),
                     {k: np.asarray(v, dtype=np.float64) for k, v in data["attacks"].items()},
                     {k: np.asarray(v, dtype=np.float64) for k, v in data["per_example"].items()}, dict(data["extra"]))  # fmt: skip


def load_scores(path: str | os.PathLike[str]) -> dict[str, SetScores] | None:
    """The cached "before" scores of a request (``{set name: scores_to_json(...)}``), or None when
    absent or unreadable: they are then scored again, never trusted half-written."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return {name: scores_from_json(data) for name, data in json.loads(path.read_text(encoding="utf-8")).items()}
    except (ValueError, KeyError, TypeError):
        return None


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _evidence(scores: Mapping[str, SetScores], seed: int, bootstrap: int) -> dict[str, Any]:
    """MIA AUCs and the signed KS test of one model, forget set (members) against held-out."""
    forget, heldout = scores["forget"], scores["heldout"]
    attacks = {
        name: membership_auc(forget.attacks[name], heldout.attacks[name], bootstrap=bootstrap, seed=seed).to_json()
        for name in forget.attacks
    }
    ks = two_sample_ks(forget.loss, heldout.loss).to_json()
    strongest = max(attacks, key=lambda name: attacks[name]["distance_from_chance"])
    return {"mia": attacks, "strongest_attack": strongest, "ks_loss": ks}


def _detectable(effect: Effect, unit: str) -> str:
    """The smallest effect detectable at this size, and the size that would resolve the observed one."""
    text = f"smallest effect detectable at this size (80% power): {effect.detectable:.3g} {unit}".rstrip()
    if effect.estimate != 0 and math.isfinite(effect.detectable) and effect.detectable > abs(effect.estimate):
        needed = math.ceil(effect.sizes[0] * (effect.detectable / abs(effect.estimate)) ** 2)
        text += f"; resolving the observed {effect.estimate:.3g} needs about {needed} forget examples"
    return text


def build_audit(
    *,
    request: dict[str, Any],
    after: Mapping[str, SetScores],
    before: Mapping[str, SetScores] | None = None,
    primary: str,
    requirements: Sequence[Requirement] = (),
    seed: int = 0,
    bootstrap: int = 1000,
    heldout_unseen: bool = False,
    defaults: Sequence[Requirement] | None = None,
) -> dict[str, Any]:
    """The audit as a JSON-ready dict.

    ``request``: what was asked and done (counts, hashes, method, settings, environment, command,
    wall time). ``before``/``after``: :class:`SetScores` per set name in :data:`SETS` (``heldout``
    may be missing: its criteria are then INCONCLUSIVE, with the reason; ``before`` is None for the
    audit of one model as it is). ``primary``: the headline metric. ``heldout_unseen``: the user
    states that the model was never trained on the held-out rows (otherwise they are described as
    what they are, data not in the forget or retain sets). ``defaults``: the headline and advisory
    criteria (default :data:`DEFAULT_REQUIREMENTS`, or :data:`SINGLE_MODEL_REQUIREMENTS` for one model).
    """
    single = before is None
    performance: dict[str, Any] = {}
    for name in SETS:
        if name not in after:
            continue
        row: dict[str, Any] = {"examples": after[name].size, "after": after[name].metrics,
                               "mean_loss": {"after": float(np.mean(after[name].loss))}}  # fmt: skip
        if not single:
            row["before"] = before[name].metrics
            row["mean_loss"]["before"] = float(np.mean(before[name].loss))
        if after[name].extra:
            row["extra_after"] = after[name].extra
        if not single and before[name].extra:
            row["extra_before"] = before[name].extra
        performance[name] = row
    values: dict[str, float | None] = {}
    intervals: dict[str, tuple[float, float]] = {}
    reasons: dict[str, str] = {}
    inconclusive: dict[str, str] = {}
    detectable: dict[str, str] = {}
    effects: dict[str, Any] = {}

    def put(name: str, effect: Effect, unit: str) -> None:
        values[name] = effect.estimate
        intervals[name] = (effect.low, effect.high)
        detectable[name] = _detectable(effect, unit)
        effects[name] = effect.to_json()

    for name in performance:
        scores = after[name].values(primary)
        put(f"{name}_score", mean_change(scores, np.zeros_like(scores)), "points")
        if not single:
            put(f"{name}_drop", mean_change(before[name].values(primary), scores), "points")
    survivors = after["forget"].extra.get("paraphrase_survivors")
    values["paraphrase_survivors"] = None if survivors is None else float(survivors)
    if survivors is None:
        reasons["paraphrase_survivors"] = "no forget row carries paraphrases"
    evidence: dict[str, Any] = {}
    notes: list[str] = []
    heldout_words = "data the user states the model never saw" if heldout_unseen else HELDOUT_MEANING
    statistical = ("forget_loss_rise", "forget_drop", "forget_loss_rise_vs_heldout", "forget_drop_vs_heldout", "forget_gap", "mia_auc", "mia_auc_high",
                   "mia_distance", "ks_stat", "ks_p")  # fmt: skip
    if "heldout" in after:
        forget, heldout = after["forget"], after["heldout"]
        evidence["after"] = _evidence(after, seed, bootstrap)
        if single:
            put("forget_gap", mean_difference(forget.values(primary), heldout.values(primary)), "points")
            effects["loss_gap"] = mean_difference(heldout.loss, forget.loss).to_json()
        else:
            evidence["before"] = _evidence(before, seed, bootstrap)
            loss = difference_of_differences(before["forget"].loss, forget.loss, before["heldout"].loss, heldout.loss)
            put("forget_loss_rise_vs_heldout", loss, "nats")
            # drops, not rises: the negated metric rises when the metric falls
            metric = difference_of_differences(-before["forget"].values(primary), -forget.values(primary),
                                               -before["heldout"].values(primary), -heldout.values(primary))  # fmt: skip
            put("forget_drop_vs_heldout", metric, "points")
            rise = mean_change(forget.loss, before["forget"].loss)  # after - before
            put("forget_loss_rise", rise, "nats")
            forget_rise = rise.estimate
            heldout_rise = float(np.mean(heldout.loss - before["heldout"].loss))
            if abs(heldout_rise) >= abs(forget_rise) and (heldout_rise or forget_rise):
                if loss.low > 0:  # a relative "rise" made by the control falling: never a pass
                    inconclusive["forget_loss_rise_vs_heldout"] = (f"the held-out set moved as much as or more than the "
                                                                   f"forget set ({heldout_rise:+.4g} vs {forget_rise:+.4g} nats)")  # fmt: skip
                notes.append(
                    f"The held-out set ({heldout_words}) moved as much as or more than the forget set: mean loss change "
                    f"forget {forget_rise:+.4f}, held-out {heldout_rise:+.4f} nats. What changed is not specific to the "
                    "forget set (a retain fine-tune teaching the answer template does this), so the audit does not pass it."
                )
        strongest = evidence["after"]["mia"][evidence["after"]["strongest_attack"]]
        values.update(mia_auc=strongest["auc"], mia_auc_high=strongest["ci_high"], mia_distance=strongest["distance_from_chance"],
                      ks_stat=evidence["after"]["ks_loss"]["statistic"], ks_p=evidence["after"]["ks_loss"]["lower_p"])  # fmt: skip
        intervals["mia_auc"] = (strongest["ci_low"], strongest["ci_high"])
        half = (strongest["ci_high"] - strongest["ci_low"]) / 2
        detectable["mia_auc"] = f"the interval's half-width at this size is {half:.3f}"
        if not single:
            first = evidence["before"]["mia"][evidence["before"]["strongest_attack"]]
            if first["ci_low"] <= 0.5:
                inconclusive["mia_auc"] = (
                    f"no power: before unlearning the strongest attack could not tell the forget set from held-out "
                    f"data either (AUC {first['auc']:.3f}, 95% CI [{first['ci_low']:.3f}, {first['ci_high']:.3f}] reaches 0.5)"
                )
                notes.append("Before unlearning the membership attack could not separate the forget set from the held-out "
                             "set: a low AUC after unlearning shows nothing; rely on the difference of differences.")  # fmt: skip
        small = min(forget.size, heldout.size)
        if small < MIN_EXAMPLES:
            why = (f"too few examples for a verdict: {forget.size} forget and {heldout.size} held-out; "
                   f"a verdict needs at least {MIN_EXAMPLES} in each")  # fmt: skip
            for name in statistical:
                inconclusive[name] = why + (f"; {detectable[name]}" if name in detectable else "")
            notes.append(why[0].upper() + why[1:] + ".")
    else:
        for name in statistical:
            values[name] = None
            reasons[name] = "no held-out set was given"
        notes.append("No held-out set: the forget set cannot be compared with a control; the forgetting criteria are "
                     "INCONCLUSIVE (give --heldout).")  # fmt: skip
    values = {k: _finite(v) for k, v in values.items()}
    if defaults is None:
        defaults = SINGLE_MODEL_REQUIREMENTS if single else DEFAULT_REQUIREMENTS
    verdicts = judge(values, requirements, reasons, intervals, defaults=defaults, inconclusive=inconclusive,
                     detectable=detectable)  # fmt: skip
    required = [v for v in verdicts if v.requirement.required]
    return _json_safe({
        "request": request,
        "kind": "one model as it is" if single else "before and after unlearning",
        "primary_metric": primary,
        "heldout_meaning": heldout_words,
        "performance": performance,
        "effects": effects,
        "evidence": evidence,
        "criteria": {name: {"value": values.get(name), "interval": list(intervals[name]) if name in intervals else None,
                            "meaning": CRITERIA[name]} for name in CRITERIA},  # fmt: skip
        "verdicts": [v.to_json() for v in verdicts],
        "outcome": overall(verdicts),
        "passed": all(v.outcome == "PASSED" for v in required) if required else None,
        "notes": notes,
    })


def _json_safe(value: Any) -> Any:
    """NaN and infinities (an interval of one example, say) become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def exit_status(audit: Mapping[str, Any]) -> int:
    """0, or 3 when a ``--require`` criterion did not pass (FAILED or INCONCLUSIVE)."""
    return 3 if audit.get("passed") is False else 0


def _n(value: float | None, spec: str) -> str:
    return "absent" if value is None else format(value, spec)


def _fmt(value: Any, digits: int = 2) -> str:
    return "absent" if value is None else f"{value:.{digits}f}"


def render_markdown(audit: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """``audit.md``: the audit in words and tables, for a reader who will not open the JSON."""
    request = audit["request"]
    counts = request["counts"]
    single = audit.get("kind") == "one model as it is"
    lines = [
        "# Deletion audit" + (" of one model as it is" if single else ""),
        "",
        f"**Outcome: {audit['outcome']}** ({_outcome(audit)})",
        "",
        "## What was asked and what was done",
        "",
        f"- Task: {request['task']}; model: `{request['model']['source']}` ({request['model']['format']})",
    ]
    if request["model"].get("original"):
        lines.append(f"- Model before unlearning (the comparison): `{request['model']['original']}`")
    lines += [
        f"- Data: `{request['data']}`; forget set: {request['forget']['source']}",
        f"- Records: {counts['forget']} to forget, {counts['retain']} retained, "
        f"{counts.get('heldout', 0)} held out ({audit.get('heldout_meaning', HELDOUT_MEANING)})",
    ]
    if "method" in request:
        lines.append(f"- Method: {request['method']}, strategy: {request['strategy']}, {request['steps']} optimizer steps")
    if request.get("saved_model"):
        saved = request["saved_model"]
        lines.append(f"- Saved model: the {saved['checkpoint']} step, step {saved['step']} ({saved['why']})"
                     + (f"; the last step's weights are in `{saved['last_model']}`, not audited" if saved.get("last_model") else ""))  # fmt: skip
    if request.get("settings"):
        lines.append("- Settings: " + ", ".join(f"{k}={v}" for k, v in request["settings"].items()))
    lines += [
        f"- Wall time: {request['seconds']:.1f} s" + (f" (unlearning {request['unlearn_seconds']:.1f} s)" if "unlearn_seconds" in request else ""),
        f"- Command: `{request['environment']['command']}`",
        f"- Code: commit {request['environment']['commit'] or 'unknown'}, torch {request['environment']['versions']['torch']}, "
        f"{request['environment']['cpu']}, {request['environment']['gpu'] or 'no GPU'}",
        "",
        "| SHA-256 | |",
        "|---|---|",
        f"| forget list (sorted ids) | `{request['forget']['ids_sha256']}` |",
    ]
    if request["forget"].get("file_sha256"):
        lines.append(f"| forget file as given | `{request['forget']['file_sha256']}` |")
    lines.append(f"| input weights | `{request['model']['input_sha256']}` |")
    if request["model"].get("output_sha256"):
        lines.append(f"| output weights | `{request['model']['output_sha256']}` |")
    whens = ("after",) if single else ("before", "after")
    lines += [
        "",
        "## Performance" + ("" if single else " before and after"),
        "",
        f"Percent; the headline metric is **{audit['primary_metric']}**. Loss is the mean per-example loss.",
        "",
    ]
    metrics = list(next(iter(audit["performance"].values()))["after"])
    head = " | ".join(f"{m} {w}" for m in metrics for w in whens) if not single else " | ".join(metrics)
    losses = " | ".join(f"loss {w}" for w in whens) if not single else "loss"
    lines.append(f"| Set | Examples | {head} | {losses} |")
    lines.append("|---" * (2 + len(metrics) * len(whens) + len(whens)) + "|")
    for name, row in audit["performance"].items():
        cells = [_fmt(row[w][m]) for m in metrics for w in whens]
        loss_cells = [f"{row['mean_loss'][w]:.4f}" for w in whens]
        lines.append(f"| {name} | {row['examples']} | " + " | ".join(cells) + " | " + " | ".join(loss_cells) + " |")
    lines += _extra_lines(audit)
    lines += ["", "## The forget set against the held-out control", ""]
    effects = audit.get("effects", {})
    if "forget_loss_rise_vs_heldout" in effects:
        lines += [
            "The forget set's own change (paired, one-sample t intervals), then the difference of differences (Welch t "
            "intervals): how much more the forget set moved between before and after than the held-out set did. "
            "Positive = the forget set lost more. When the held-out set moved as much, what changed is not forgetting "
            "of these records. 95% intervals.",
            "",
            "| Measure | Estimate | 95% interval | one-sided p (H1: > 0) | smallest detectable (80% power) |",
            "|---|---|---|---|---|",
        ]
        for name, unit in (("forget_loss_rise", "nats"), ("forget_loss_rise_vs_heldout", "nats"),
                           ("forget_drop", "points"), ("forget_drop_vs_heldout", "points")):  # fmt: skip
            e = effects[name]
            lines.append(f"| {name} ({unit}) | {_n(e['estimate'], '+.4g')} | [{_n(e['ci_low'], '.4g')}, {_n(e['ci_high'], '.4g')}] | "
                         f"{_n(e['p_greater'], '.3g')} | {_n(e['detectable'], '.3g')} |")  # fmt: skip
    elif "forget_gap" in effects:
        e, g = effects["forget_gap"], effects["loss_gap"]
        lines += [
            "One model: the forget set against the held-out set, 95% Welch t intervals. Near 0 = the forget records are "
            "treated like data outside the forget and retain sets; this cannot tell forgotten records from records the "
            "model never knew (give --original for the before/after evidence).",
            "",
            "| Measure | Estimate | 95% interval | one-sided p (H1: forget better known) |",
            "|---|---|---|---|",
            f"| forget_gap ({audit['primary_metric']}, points) | {_n(e['estimate'], '+.4g')} | [{_n(e['ci_low'], '.4g')}, "
            f"{_n(e['ci_high'], '.4g')}] | {_n(e['p_greater'], '.3g')} |",
            f"| held-out minus forget loss (nats) | {_n(g['estimate'], '+.4g')} | [{_n(g['ci_low'], '.4g')}, "
            f"{_n(g['ci_high'], '.4g')}] | {_n(g['p_greater'], '.3g')} |",
        ]
    else:
        lines.append("Absent: no held-out set was given.")
    evidence = audit["evidence"]
    if evidence:
        lines += [
            "",
            "Membership inference: each attack scores every example (higher = \"was trained on\"); the AUC is the chance "
            "that a random forget record scores above a random held-out record. 0.5 means the attack cannot tell the "
            f"forget set from the held-out set ({audit.get('heldout_meaning', HELDOUT_MEANING)}). 95% bootstrap intervals.",
            "",
            "| Attack | " + " | ".join(f"AUC {w} | 95% CI {w}" for w in whens) + " |",
            "|---" * (1 + 2 * len(whens)) + "|",
        ]
        for name in evidence["after"]["mia"]:
            cells = []
            for w in whens:
                a = evidence[w]["mia"][name]
                cells.append(f"{a['auc']:.3f} | [{a['ci_low']:.3f}, {a['ci_high']:.3f}]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Two-sample Kolmogorov-Smirnov tests between the forget set's and the held-out set's per-example losses. "
            "The two-sided statistic has no direction; the signed ones say which way the forget losses lie "
            "(lower = the forget set still looks trained on):",
            "",
            "| | KS statistic | p-value | D+ (forget lower) | p | D- (forget higher) | p | forget losses lie |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for w in whens:
            k = evidence[w]["ks_loss"]
            lines.append(f"| {w} | {k['statistic']:.4f} | {k['p_value']:.3g} | {k['lower_statistic']:.4f} | {k['lower_p']:.3g} | "
                         f"{k['higher_statistic']:.4f} | {k['higher_p']:.3g} | {k['direction']} |")  # fmt: skip
    lines += ["", "## Verdicts", "", "PASSED: the whole 95% interval is on the wanted side of the threshold; FAILED: the whole "
              "interval is on the other side; INCONCLUSIVE: it straddles the threshold, or the data cannot decide.",
              "", "```"] + [verdict_line(v) for v in audit["verdicts"]] + ["```", ""]  # fmt: skip
    if audit["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in audit["notes"]] + [""]
    if audit.get("probes"):
        lines += _probe_lines(audit["probes"])
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    lines += [
        "## What this audit shows and what it does not",
        "",
        "It shows how the model treats the forget records compared with the held-out records "
        f"({audit.get('heldout_meaning', HELDOUT_MEANING)})" + ("" if single else ", before and after")
        + ", and what unlearning cost on the retained data. It does not prove that the model is the one a "
        "retraining without these records would give, nor that no stronger attack could still detect them; a "
        "held-out set the model did see (a pretrained model's corpus) makes every comparison weaker. See docs/unlearn.md.",
        "",
    ]
    return "\n".join(lines)


def _extra_lines(audit: Mapping[str, Any]) -> list[str]:
    """Fact-level results a task reported beyond the metrics (paraphrases of the forget questions)."""
    lines: list[str] = []
    for name, row in audit["performance"].items():
        extra = row.get("extra_after") or {}
        if "paraphrase_survivors" in extra:
            before = (row.get("extra_before") or {}).get("paraphrase_survivors")
            lines += ["", f"Paraphrases of the {name} questions: {extra['paraphrases']} reworded questions over "
                      f"{extra['facts_with_paraphrases']} facts; facts whose greedy answer to some rewording still holds "
                      f"the fact: {extra['paraphrase_survivors']}" + (f" (before: {before})" if before is not None else "")
                      + f"; mean fact probability over the rewordings {extra['paraphrase_fact_probability']:.2f}%."]  # fmt: skip
    return lines


def _probe_lines(probes: Mapping[str, Any]) -> list[str]:
    lines = ["## Robustness probes", ""]
    for name, probe in probes.items():
        lines.append(f"### {name}")
        lines.append("")
        lines += [f"- {line}" for line in probe.get("summary", [])]
        lines.append("")
    return lines


def verdict_line(verdict: Mapping[str, Any]) -> str:
    outcome = verdict.get("outcome") or ("INCONCLUSIVE" if verdict["passed"] is None else ("PASSED" if verdict["passed"] else "FAILED"))
    kind = verdict.get("role") or ("required" if verdict["required"] else "advisory")
    value = "absent" if verdict["value"] is None else f"{verdict['value']:.4g}"
    interval = f" [{_n(verdict['interval'][0], '.4g')}, {_n(verdict['interval'][1], '.4g')}]" if verdict.get("interval") else ""
    reason = f" ({verdict['reason']})" if verdict["reason"] else ""
    return f"{outcome:12s} {verdict['criterion']} = {value}{interval}, wanted {verdict['op']} {verdict['threshold']:g} [{kind}]{reason}"


def _outcome(audit: Mapping[str, Any]) -> str:
    counted = [v for v in audit["verdicts"] if v.get("role") in ("headline", "required")]
    failed = [v["criterion"] for v in counted if v["outcome"] == "FAILED"]
    open_ = [v["criterion"] for v in counted if v["outcome"] == "INCONCLUSIVE"]
    parts = []
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if open_:
        parts.append("inconclusive: " + ", ".join(open_))
    if audit["passed"] is not None:
        parts.append("every --require criterion PASSED" if audit["passed"] else "a --require criterion did not pass")
    return "; ".join(parts) or "every headline criterion PASSED"


def _plots(audit: Mapping[str, Any], losses: Mapping[str, Mapping[str, np.ndarray]], out: Path) -> list[Path]:
    from dualoptim.reports.plots import pyplot, save

    plt = pyplot()
    written = []
    whens = [w for w in ("before", "after") if w in losses]
    if "heldout" in losses["after"]:
        fig, axes = plt.subplots(1, len(whens), figsize=(5 * len(whens), 3.6), sharey=True, squeeze=False)
        axes = axes[0]
        for ax, when in zip(axes, whens):
            sets = losses[when]
            high = max(float(np.quantile(np.concatenate([sets["forget"], sets["heldout"]]), 0.99)), 1e-6)
            bins = np.linspace(0.0, high, 40)
            for name, color in (("forget", "tab:red"), ("heldout", "tab:blue")):
                ax.hist(np.clip(sets[name], 0, high), bins=bins, density=True, alpha=0.5, color=color, label=name)
            ks = audit["evidence"][when]["ks_loss"]
            ax.set_title(f"{when}: KS {ks['statistic']:.3f}, p {ks['p_value']:.2g}")
            ax.set_xlabel("per-example loss")
        axes[0].set_ylabel("density")
        axes[0].legend()
        fig.tight_layout()
        written.append(_save_atomic(save, fig, out / "loss-distributions.png"))
    metric = audit["primary_metric"]
    names = list(audit["performance"])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    x = np.arange(len(names))
    for shift, when, color in ((-0.2, "before", "tab:gray"), (0.2, "after", "tab:green")):
        if when not in whens:
            continue
        ax.bar(x + shift, [audit["performance"][n][when][metric] for n in names], 0.4, label=when, color=color)
    ax.set_xticks(x, names)
    ax.set_ylabel(f"{metric} (%)")
    ax.legend()
    fig.tight_layout()
    written.append(_save_atomic(save, fig, out / "performance.png"))
    return written


def _save_atomic(save: Any, fig: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    save(fig, tmp)
    os.replace(tmp, path)
    return path


def write_audit(
    audit: Mapping[str, Any], out: str | os.PathLike[str], losses: Mapping[str, Mapping[str, np.ndarray]] | None = None
) -> list[Path]:
    """Write ``audit.json``, the plots (from ``losses[before|after][set]``) and ``audit.md`` to ``out``, atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(audit, losses, out) if losses is not None else []
    json_path = write_json_atomic(out / "audit.json", audit)
    md_path = write_text_atomic(out / "audit.md", render_markdown(audit, [p.name for p in plots]))
    for path in (json_path, md_path):
        path.chmod(0o644)  # a record to file and share, not a private temporary file
    return [json_path, md_path, *plots]
