"""``--require forget_loss_rise_vs_heldout>0,retain_drop<=2``: thresholds an audit must meet, and the
verdict of each criterion: PASSED, FAILED or INCONCLUSIVE (``docs/design.md`` §7.2).

A criterion estimated from examples carries its interval; the verdict reads the interval, not the
point: PASSED when the whole interval is on the wanted side of the threshold, FAILED when the
whole interval is on the other side, INCONCLUSIVE when it straddles the threshold (too few examples
or no power: the verdict gives the smallest effect detectable at this size). ``--require`` passes
only a PASSED criterion, never an inconclusive one.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["CLASS_REQUIREMENTS", "CRITERIA", "DEFAULT_REQUIREMENTS", "OUTCOMES", "SINGLE_MODEL_REQUIREMENTS", "Requirement", "Verdict",
           "judge", "overall", "parse_requirements"]  # fmt: skip

OUTCOMES = ("PASSED", "FAILED", "INCONCLUSIVE")

#: every criterion an audit computes, with what it measures and which way is good
CRITERIA: dict[str, str] = {
    "forget_loss_rise": "the forget set's mean per-example loss after minus before (nats); > 0 = it became less known",
    "forget_loss_rise_vs_heldout": "difference of differences of per-example loss (nats): the forget set's mean loss "
    "rise from before to after minus the held-out set's; > 0 = the forget set became less known than the control did",
    "forget_drop_vs_heldout": "difference of differences of the per-example headline metric (points): the forget "
    "set's drop minus the held-out set's; > 0 = the forget set lost more than the control did",
    "forget_gap": "one model: forget-set headline metric minus held-out's (points); near 0 = the forget set is treated "
    "like data outside the forget and retain sets, > 0 = it is still known better",
    "mia_auc": "AUC of the strongest membership-inference attack after unlearning, forget set vs held-out "
    "(0.5 = the attack cannot tell them apart)",
    "mia_auc_high": "upper end of that AUC's 95% bootstrap interval",
    "mia_distance": "|AUC - 0.5| of the strongest attack",
    "ks_stat": "two-sided KS statistic between the forget and held-out loss distributions (no direction)",
    "ks_p": "one-sided KS p-value of 'the forget losses are lower than held-out' (small = the forget set still "
    "looks trained on)",
    "forget_drop": "forget-set headline metric before minus after, in points",
    "retain_drop": "retain-set headline metric before minus after, in points (the utility cost)",
    "heldout_drop": "held-out headline metric before minus after, in points",
    "forget_score": "forget-set headline metric after (percent)",
    "retain_score": "retain-set headline metric after (percent)",
    "heldout_score": "held-out headline metric after (percent)",
    "paraphrase_survivors": "causal LMs: forget facts whose greedy answer to a reworded question still holds the "
    "fact, after (count)",
}

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}  # fmt: skip
#: which operator says "on the other side of the threshold"
_OPPOSITE = {"<=": ">", "<": ">=", ">=": "<", ">": "<="}


@dataclass(frozen=True)
class Requirement:
    """``criterion op threshold``. ``role``: ``required`` (``--require``: gates the exit status),
    ``headline`` (a default the overall verdict is made of) or ``advisory`` (reported only)."""

    criterion: str
    op: str
    threshold: float
    required: bool = True
    role: str = ""

    def __post_init__(self) -> None:
        role = "required" if self.required else (self.role if self.role in ("headline", "advisory") else "advisory")
        object.__setattr__(self, "role", role)


def _default(criterion: str, op: str, threshold: float, role: str) -> Requirement:
    return Requirement(criterion, op, threshold, required=False, role=role)


#: the verdicts of an audit with the model before and after unlearning
DEFAULT_REQUIREMENTS = (
    _default("forget_loss_rise", ">", 0.0, "headline"),
    _default("forget_loss_rise_vs_heldout", ">", 0.0, "headline"),
    _default("forget_drop", ">", 0.0, "headline"),
    _default("forget_drop_vs_heldout", ">", 0.0, "headline"),
    _default("mia_auc", "<=", 0.6, "headline"),
    _default("retain_drop", "<=", 5.0, "advisory"),
)
#: forgetting a whole class: its held-out examples are expected to fall with the forget set (no
#: difference of differences); the class must be gone from both, at a bounded cost on the rest
CLASS_REQUIREMENTS = (
    _default("forget_loss_rise", ">", 0.0, "headline"),
    _default("forget_drop", ">", 0.0, "headline"),
    _default("heldout_drop", ">", 0.0, "headline"),
    _default("retain_drop", "<=", 5.0, "advisory"),
)
#: the verdicts of ``dualoptim audit`` of one model, without the model before unlearning
SINGLE_MODEL_REQUIREMENTS = (
    _default("forget_gap", "<=", 5.0, "headline"),
    _default("mia_auc", "<=", 0.6, "headline"),
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
    #: PASSED, FAILED or INCONCLUSIVE
    outcome: str
    reason: str | None = None
    #: the interval the verdict read, when the criterion has one
    interval: tuple[float, float] | None = None

    @property
    def passed(self) -> bool | None:
        """True for PASSED, False for FAILED, None for INCONCLUSIVE."""
        return {"PASSED": True, "FAILED": False}.get(self.outcome)

    def to_json(self) -> dict:
        r = self.requirement
        return {"criterion": r.criterion, "op": r.op, "threshold": r.threshold, "required": r.required, "role": r.role,
                "value": self.value, "interval": list(self.interval) if self.interval else None,
                "outcome": self.outcome, "passed": self.passed, "reason": self.reason}  # fmt: skip


def _judge_one(requirement: Requirement, value: float | None, interval: tuple[float, float] | None,
               reason: str | None, detectable: str | None) -> Verdict:  # fmt: skip
    op, threshold = requirement.op, requirement.threshold
    if value is None or not math.isfinite(value):
        return Verdict(requirement, None, "INCONCLUSIVE", reason or "not computed")
    if reason is not None:  # the criterion was computed but cannot decide (too few examples, no power)
        return Verdict(requirement, float(value), "INCONCLUSIVE", reason, interval)
    if interval is None:
        outcome = "PASSED" if _OPERATORS[op](value, threshold) else "FAILED"
        return Verdict(requirement, float(value), outcome)
    low, high = interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return Verdict(requirement, float(value), "INCONCLUSIVE", "no interval: too few examples", None)
    # the whole interval on the wanted side passes; the whole interval on the other side fails
    wanted = [_OPERATORS[op](end, threshold) for end in (low, high)]
    if all(wanted):
        outcome, why = "PASSED", None
    elif not any(wanted):
        outcome, why = "FAILED", None
    else:
        outcome = "INCONCLUSIVE"
        why = (f"the 95% interval [{low:.4g}, {high:.4g}] straddles {threshold:g}"
               + (f"; {detectable}" if detectable else ""))  # fmt: skip
    return Verdict(requirement, float(value), outcome, why, (float(low), float(high)))


def judge(
    values: Mapping[str, float | None],
    required: Sequence[Requirement],
    reasons: Mapping[str, str] | None = None,
    intervals: Mapping[str, tuple[float, float]] | None = None,
    *,
    defaults: Sequence[Requirement] = DEFAULT_REQUIREMENTS,
    inconclusive: Mapping[str, str] | None = None,
    detectable: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """A verdict for every default and every required criterion (a required one replaces its default).

    ``reasons``: why a value is absent. ``intervals``: the 95% interval of a criterion's estimate.
    ``inconclusive``: criteria computed but unable to decide, with the reason (too few examples,
    an attack with no power). ``detectable``: text naming the smallest detectable effect.
    """
    reasons, intervals = reasons or {}, intervals or {}
    inconclusive, detectable = inconclusive or {}, detectable or {}
    named = {r.criterion for r in required}
    verdicts = []
    for requirement in [*(d for d in defaults if d.criterion not in named), *required]:
        name = requirement.criterion
        value = values.get(name)
        why = reasons.get(name) if value is None else inconclusive.get(name)
        verdicts.append(_judge_one(requirement, value, intervals.get(name), why, detectable.get(name)))
    return verdicts


def overall(verdicts: Sequence[Verdict]) -> str:
    """FAILED when a headline or required criterion failed, else INCONCLUSIVE when one could not
    decide, else PASSED (advisory criteria do not count)."""
    counted = [v for v in verdicts if v.requirement.role in ("headline", "required")]
    if not counted:
        return "INCONCLUSIVE"
    if any(v.outcome == "FAILED" for v in counted):
        return "FAILED"
    if any(v.outcome == "INCONCLUSIVE" for v in counted):
        return "INCONCLUSIVE"
    return "PASSED"
