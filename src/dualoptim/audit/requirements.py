"""``--require mia_auc<=0.55,retain_drop<=2``: thresholds an audit must meet, and their verdicts."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["CRITERIA", "DEFAULT_REQUIREMENTS", "Requirement", "Verdict", "judge", "parse_requirements"]

#: every criterion an audit computes, with what it measures (all values are after unlearning)
CRITERIA: dict[str, str] = {
    "mia_auc": "AUC of the strongest membership-inference attack, forget set vs held-out (0.5 = chance)",
    "mia_auc_high": "upper end of that AUC's 95% bootstrap interval",
    "mia_distance": "|AUC - 0.5| of the strongest attack",
    "ks_stat": "KS statistic between the forget and held-out loss distributions",
    "ks_p": "KS p-value between the forget and held-out loss distributions (large = alike)",
    "forget_drop": "forget-set score before minus after, in points (the headline metric of the task)",
    "retain_drop": "retain-set score before minus after, in points",
    "heldout_drop": "held-out score before minus after, in points",
    "forget_score": "forget-set score after unlearning (percent)",
    "retain_score": "retain-set score after unlearning (percent)",
    "heldout_score": "held-out score after unlearning (percent)",
}

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}  # fmt: skip


@dataclass(frozen=True)
class Requirement:
    """``criterion op threshold``; ``required`` ones gate the exit status, the others are advice."""

    criterion: str
    op: str
    threshold: float
    required: bool = True

    def __str__(self) -> str:
        return f"{self.criterion}{self.op}{self.threshold:g}"


#: judged in every audit (advice only unless also given with --require)
DEFAULT_REQUIREMENTS = (
    Requirement("mia_auc", "<=", 0.55, required=False),
    Requirement("ks_p", ">=", 0.05, required=False),
    Requirement("retain_drop", "<=", 2.0, required=False),
    Requirement("heldout_drop", "<=", 2.0, required=False),
)


def parse_requirements(text: str | Sequence[str] | None) -> list[Requirement]:
    """``"mia_auc<=0.55,retain_drop<=2"`` (or a list of such strings) -> requirements."""
    if text is None:
        return []
    parts = [text] if isinstance(text, str) else list(text)
    found = []
    for part in (p.strip() for chunk in parts for p in chunk.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"([a-z_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)", part)
        if match is None:
            raise ValueError(f"bad requirement {part!r}; expected CRITERION<=NUMBER (or >=, <, >), e.g. mia_auc<=0.55")
        name, op, number = match.groups()
        if name not in CRITERIA:
            raise ValueError(f"unknown criterion {name!r} in --require; valid: {', '.join(CRITERIA)}")
        try:
            threshold = float(number)
        except ValueError:
            raise ValueError(f"bad threshold {number!r} in requirement {part!r}; expected a number") from None
        found.append(Requirement(name, op, threshold))
    return found


@dataclass(frozen=True)
class Verdict:
    requirement: Requirement
    value: float | None
    #: None when the criterion could not be computed (say, no held-out set for the MIA)
    passed: bool | None
    reason: str | None = None

    def to_json(self) -> dict:
        r = self.requirement
        return {"criterion": r.criterion, "op": r.op, "threshold": r.threshold, "required": r.required,
                "value": self.value, "passed": self.passed, "reason": self.reason}  # fmt: skip


def judge(
    values: Mapping[str, float | None],
    required: Sequence[Requirement],
    reasons: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """A verdict for every default and every required criterion (a required one replaces its default)."""
    reasons = reasons or {}
    named = {r.criterion for r in required}
    verdicts = []
    for requirement in [*(d for d in DEFAULT_REQUIREMENTS if d.criterion not in named), *required]:
        value = values.get(requirement.criterion)
        if value is None:
            reason = reasons.get(requirement.criterion, "not computed")
            verdicts.append(Verdict(requirement, None, None, reason))
        else:
            passed = _OPERATORS[requirement.op](value, requirement.threshold)
            verdicts.append(Verdict(requirement, float(value), bool(passed)))
    return verdicts
