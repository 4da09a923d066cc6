"""Safety ``results.json`` -> a markdown table (percent, mean ± std over seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualoptim.io import write_text_atomic
from dualoptim.reports.tables import markdown_table, mean_std_cell
from dualoptim.safety.results import COLUMNS

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


def render_table(results: dict[str, Any]) -> str:
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
    header = ["Loss", "Strategy", *(HEADERS.get(c, c) for c in columns), "seconds"]
    body = [
        [row["loss"], row["strategy"] + (f" (stopped on {len(row['stopped'])})" if row.get("stopped") else ""),
         *(_cell(row["metrics"].get(c)) for c in columns), f"{row['seconds']:.0f}"]
        for row in results["rows"]
    ]  # fmt: skip
    lines += markdown_table(header, body)
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
