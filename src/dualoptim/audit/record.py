"""The audit of one deletion request: what was asked and done, before/after evidence, verdicts.

A task measures each set (forget, retain, held-out) with the model before and after unlearning
as :class:`SetScores`; :func:`build_audit` turns them into the audit (``docs/design.md`` §7) and
:func:`write_audit` writes ``audit.json``, ``audit.md`` and the plots. The same code audits image
classifiers and language models.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dualoptim.audit.requirements import CRITERIA, Requirement, judge
from dualoptim.audit.stats import membership_auc, two_sample_ks
from dualoptim.io import write_json_atomic, write_text_atomic

__all__ = ["SETS", "SetScores", "build_audit", "exit_status", "render_markdown", "write_audit"]

SETS = ("forget", "retain", "heldout")


@dataclass
class SetScores:
    """One model on one set: summary metrics and per-example values.

    ``metrics`` are percentages (accuracy; answer probability, ROUGE); ``loss`` is the per-example
    loss; ``attacks`` maps a membership-inference attack to its per-example score, higher = "member".
    """

    metrics: dict[str, float]
    loss: np.ndarray
    attacks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.loss)


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _evidence(scores: Mapping[str, SetScores], seed: int, bootstrap: int) -> dict[str, Any]:
    """MIA AUCs and the KS test of one model, forget set (members) against held-out (non-members)."""
    forget, heldout = scores["forget"], scores["heldout"]
    attacks = {
        name: membership_auc(forget.attacks[name], heldout.attacks[name], bootstrap=bootstrap, seed=seed).to_json()
        for name in forget.attacks
    }
    ks = two_sample_ks(forget.loss, heldout.loss).to_json()
    strongest = max(attacks, key=lambda name: attacks[name]["distance_from_chance"])
    return {"mia": attacks, "strongest_attack": strongest, "ks_loss": ks}


def build_audit(
    *,
    request: dict[str, Any],
    before: Mapping[str, SetScores],
    after: Mapping[str, SetScores],
    primary: str,
    requirements: Sequence[Requirement] = (),
    seed: int = 0,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """The audit as a JSON-ready dict.

    ``request``: what was asked and done (counts, hashes, method, settings, environment, command,
    wall time). ``before``/``after``: :class:`SetScores` per set name in :data:`SETS` (``heldout``
    may be missing: the MIA and KS evidence is then absent, with the reason). ``primary``: the
    metric whose drop in points is ``forget_drop``, ``retain_drop``, ``heldout_drop``.
    """
    performance = {
        name: {
            "examples": before[name].size,
            "before": before[name].metrics,
            "after": after[name].metrics,
            "mean_loss": {"before": float(np.mean(before[name].loss)), "after": float(np.mean(after[name].loss))},
        }
        for name in SETS
        if name in before
    }
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for name, row in performance.items():
        values[f"{name}_score"] = row["after"][primary]
        values[f"{name}_drop"] = row["before"][primary] - row["after"][primary]
    evidence: dict[str, Any] = {}
    notes = []
    if "heldout" in before:
        evidence = {"before": _evidence(before, seed, bootstrap), "after": _evidence(after, seed, bootstrap)}
        strongest = evidence["after"]["mia"][evidence["after"]["strongest_attack"]]
        values.update(mia_auc=strongest["auc"], mia_auc_high=strongest["ci_high"], mia_distance=strongest["distance_from_chance"],
                      ks_stat=evidence["after"]["ks_loss"]["statistic"], ks_p=evidence["after"]["ks_loss"]["p_value"])  # fmt: skip
        first = evidence["before"]["mia"][evidence["before"]["strongest_attack"]]
        if first["ci_low"] <= 0.5 <= first["ci_high"]:
            notes.append(
                f"Before unlearning the strongest attack could not tell the forget set from held-out data either "
                f"(AUC {first['auc']:.3f}, 95% CI [{first['ci_low']:.3f}, {first['ci_high']:.3f}] contains 0.5): "
                "the membership test has no power to show forgetting on this model and data."
            )
    else:
        for name in ("mia_auc", "mia_auc_high", "mia_distance", "ks_stat", "ks_p"):
            values[name] = None
            reasons[name] = "no held-out set was given"
        notes.append("No held-out set: the membership-inference and KS evidence is absent (give --heldout).")
    values = {k: _finite(v) if v is not None else None for k, v in values.items()}
    verdicts = judge(values, requirements, reasons)
    required = [v for v in verdicts if v.requirement.required]
    return {
        "request": request,
        "primary_metric": primary,
        "performance": performance,
        "evidence": evidence,
        "criteria": {name: {"value": values.get(name), "meaning": CRITERIA[name]} for name in CRITERIA},
        "verdicts": [v.to_json() for v in verdicts],
        "passed": all(v.passed is True for v in required) if required else None,
        "notes": notes,
    }


def exit_status(audit: Mapping[str, Any]) -> int:
    """0, or 3 when a required criterion failed (or could not be computed)."""
    return 3 if audit.get("passed") is False else 0


def _fmt(value: Any, digits: int = 2) -> str:
    return "absent" if value is None else f"{value:.{digits}f}"


def render_markdown(audit: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """``audit.md``: the audit in words and tables, for a reader who will not open the JSON."""
    request = audit["request"]
    counts = request["counts"]
    lines = [
        "# Deletion audit",
        "",
        f"**Outcome:** {_outcome(audit)}",
        "",
        "## What was asked and what was done",
        "",
        f"- Task: {request['task']}; model: `{request['model']['source']}` ({request['model']['format']})",
        f"- Data: `{request['data']}`; forget set: {request['forget']['source']}",
        f"- Records: {counts['forget']} to forget, {counts['retain']} retained, "
        f"{counts.get('heldout', 0)} held out (never trained on)",
        f"- Method: {request['method']}, strategy: {request['strategy']}, {request['steps']} optimizer steps",
        "- Settings: " + ", ".join(f"{k}={v}" for k, v in request["settings"].items()),
        f"- Wall time: {request['seconds']:.1f} s (unlearning {request['unlearn_seconds']:.1f} s)",
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
    lines += [
        f"| input weights | `{request['model']['input_sha256']}` |",
        f"| output weights | `{request['model']['output_sha256']}` |",
        "",
        "## Performance before and after",
        "",
        f"Percent; the headline metric is **{audit['primary_metric']}**. Loss is the mean per-example loss.",
        "",
    ]
    metrics = list(next(iter(audit["performance"].values()))["before"])
    lines.append("| Set | Examples | " + " | ".join(f"{m} before | {m} after" for m in metrics) + " | loss before | loss after |")
    lines.append("|---" * (2 + 2 * len(metrics) + 2) + "|")
    for name, row in audit["performance"].items():
        cells = [f"{_fmt(row['before'][m])} | {_fmt(row['after'][m])}" for m in metrics]
        lines.append(f"| {name} | {row['examples']} | " + " | ".join(cells)
                     + f" | {row['mean_loss']['before']:.4f} | {row['mean_loss']['after']:.4f} |")  # fmt: skip
    evidence = audit["evidence"]
    lines += ["", "## Evidence of forgetting (no retraining needed)", ""]
    if evidence:
        lines += [
            "Membership inference: each attack scores every example (higher = \"was trained on\"); the AUC is the chance "
            "that a random forget record scores above a random held-out record. 0.5 means the attack cannot tell the "
            "forget set from data the model never saw. 95% bootstrap intervals.",
            "",
            "| Attack | AUC before | 95% CI before | AUC after | 95% CI after | distance from 0.5 after |",
            "|---|---|---|---|---|---|",
        ]
        for name, b in evidence["before"]["mia"].items():
            a = evidence["after"]["mia"][name]
            lines.append(f"| {name} | {b['auc']:.3f} | [{b['ci_low']:.3f}, {b['ci_high']:.3f}] | {a['auc']:.3f} | "
                         f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}] | {a['distance_from_chance']:.3f} |")  # fmt: skip
        kb, ka = evidence["before"]["ks_loss"], evidence["after"]["ks_loss"]
        lines += [
            "",
            "Two-sample Kolmogorov-Smirnov test between the forget set's and the held-out set's per-example losses "
            "(a retrain-free analogue of TOFU's Forget Quality; a large p-value means the two look alike):",
            "",
            "| | KS statistic | p-value |",
            "|---|---|---|",
            f"| before | {kb['statistic']:.4f} | {kb['p_value']:.3g} |",
            f"| after | {ka['statistic']:.4f} | {ka['p_value']:.3g} |",
        ]
    else:
        lines.append("Absent: no held-out set was given.")
    lines += ["", "## Verdicts", "", "```"] + [_verdict_line(v) for v in audit["verdicts"]] + ["```", ""]
    if audit["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in audit["notes"]] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    lines += [
        "## What this audit shows and what it does not",
        "",
        "It shows how the model treats the forget records compared with records it never saw, before and after, "
        "and what unlearning cost on the retained and held-out data. It does not prove that the model is the one a "
        "retraining without these records would give, nor that no stronger attack could still detect them; see "
        "docs/unlearn.md.",
        "",
    ]
    return "\n".join(lines)


def _verdict_line(verdict: Mapping[str, Any]) -> str:
    status = "ABSENT" if verdict["passed"] is None else ("PASS" if verdict["passed"] else "FAIL")
    kind = "required" if verdict["required"] else "advisory"
    value = "absent" if verdict["value"] is None else f"{verdict['value']:.4g}"
    reason = f" ({verdict['reason']})" if verdict["reason"] else ""
    return f"{status:6s} {verdict['criterion']} = {value}, wanted {verdict['op']} {verdict['threshold']:g} [{kind}]{reason}"


def _outcome(audit: Mapping[str, Any]) -> str:
    if audit["passed"] is None:
        failed = [v["criterion"] for v in audit["verdicts"] if v["passed"] is False]
        return "no --require thresholds were given; advisory criteria " + (
            f"not met: {', '.join(failed)}" if failed else "all met"
        )
    return "PASSED every --require threshold" if audit["passed"] else "FAILED a --require threshold"


def _plots(audit: Mapping[str, Any], losses: Mapping[str, Mapping[str, np.ndarray]], out: Path) -> list[Path]:
    from dualoptim.reports.plots import pyplot, save

    plt = pyplot()
    written = []
    if "heldout" in losses["before"]:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
        for ax, when in zip(axes, ("before", "after")):
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
