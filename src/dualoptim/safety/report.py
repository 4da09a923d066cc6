"""Safety ``results.json`` -> a markdown table (percent, mean ± std over seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualoptim.io import write_text_atomic
from dualoptim.reports.tables import markdown_table, mean_std_cell
from dualoptim.safety.results import COLUMNS, DO_NOTHING, FORGET_SIDE, NOISE_FLOOR, with_controls

__all__ = ["render_table", "write_report"]

#: short column headers
HEADERS = {
    "Safety I-MaliciousInstructions": "I-Malicious", "Safety I-CoNa": "I-CoNa", "Safety I-Controversial": "I-Controv.",
    "Safety Q-Harm": "Q-Harm", "XSTest unsafe refusal": "XSTest unsafe refused", "Benign ROUGE (held-out)": "Benign ROUGE held-out",
}  # fmt: skip


def _cell(metric: dict[str, float] | None) -> str:
    if metric is None:
        return "absent"
    return mean_std_cell(metric["mean"], metric["std"] or None, digits=1)


def _label(row: dict[str, Any]) -> list[str]:
    """Loss and strategy cells: the target is the do-nothing control; a flagged run says so."""
    if row["loss"] == DO_NOTHING and row["strategy"] == "-":
        return ["do nothing (target)", "-"]
    stopped = f" (stopped on {len(row['stopped'])})" if row.get("stopped") else ""
    return [row["loss"], row["strategy"] + stopped + (" (did not unlearn)" if row.get("did_not_unlearn") else "")]


def render_table(results: dict[str, Any]) -> str:
    """Rows loss × strategy after the do-nothing row (the target); "OVR − do nothing" is each row's OVR minus the target's."""
    results = with_controls(results)
    judge = results["judge"]
    lines = [
        f"# Safety alignment by unlearning, seeds {', '.join(str(s) for s in results['seeds'])}",
        "",
        f"Judge: **{judge['judge']}**" + (f" (FALLBACK: {judge['fallback']})" if judge.get("fallback") else "") + ".",
        "Percent; Safety columns (share of harmful prompts refused) and OVR higher is better, Over-refusal "
        "(XSTest safe prompts refused) lower is better.",
        "",
    ]
    columns = [c for c in COLUMNS if any(r["metrics"].get(c) is not None for r in results["rows"])]
    target = next((r for r in results["rows"] if r["loss"] == DO_NOTHING and r["strategy"] == "-"), None)
    base = (target or {}).get("metrics", {}).get("OVR")

    def delta(row: dict[str, Any]) -> str:
        ovr = row["metrics"].get("OVR")
        return "–" if row is target or ovr is None or base is None else f"{ovr['mean'] - base['mean']:+.1f}"

    header = ["Loss", "Strategy", *(HEADERS.get(c, c) for c in columns), "OVR − do nothing", "seconds"]
    body = [
        [*_label(row), *(_cell(row["metrics"].get(c)) for c in columns), delta(row), f"{row['seconds']:.0f}"]
        for row in results["rows"]
    ]
    lines += markdown_table(header, body)
    if target is None:
        lines += ["", "The do-nothing row is absent: this results.json has no target evaluation."]
    else:
        lines += ["", "do nothing (target) = the model before unlearning, judged and scored like a run. \"did not "
                  f"unlearn\": {', '.join(FORGET_SIDE)} within seed noise of the target's, |mean difference| <= "
                  f"max(std of the row, std of the target, {NOISE_FLOOR:g} point) (docs/design.md §4.3)."]  # fmt: skip
    absent: dict[str, str] = {}
    for row in results["rows"]:
        absent.update(row.get("absent", {}))
    if absent:
        lines += ["", "Absent:", ""] + [f"- {name}: {reason}" for name, reason in sorted(absent.items())]
    forget = results.get("forget_set") or {}
    if forget:
        lines += ["", f"Forget set: {forget['kept']} of {forget['prompts']} harmful instructions kept with the target's "
                  f"own answer ({forget['refused']} refused, {forget['empty']} empty)."]  # fmt: skip
    lines += ["", *[f"- {note}" for note in results.get("notes", [])], ""]
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``table.md`` into ``out``."""
    return [write_text_atomic(Path(out) / "table.md", render_table(results))]
