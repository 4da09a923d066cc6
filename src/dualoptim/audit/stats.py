"""Retrain-free statistics of forgetting (``docs/design.md`` §7): membership-inference AUC with a
bootstrap confidence interval, a signed two-sample Kolmogorov-Smirnov test, and the mean
differences (difference of differences) with their t intervals and the smallest detectable effect.

All compare the forget set with a held-out set (data not in the forget or retain sets). The
headline is the difference of differences: how much more the forget set's per-example loss rose
(or its score fell) than the held-out set's, between the model before and after unlearning. A
change that the held-out set shows as much as the forget set (a retain fine-tune teaching the
answer template, say) is not forgetting, and this statistic says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["AucResult", "Effect", "KsResult", "auc", "difference_of_differences", "mean_change", "mean_difference",
           "membership_auc", "two_sample_ks"]

#: power at which the smallest detectable effect is given
POWER = 0.8


def auc(members: Sequence[float], non_members: Sequence[float]) -> float:
    """Area under the ROC curve of the score "higher = member", ties counted one half.

    Equals the Mann-Whitney :math:`U / (n_m n_n)`: the probability that a random member scores
    above a random non-member.
    """
    members = np.asarray(members, dtype=np.float64)
    non_members = np.asarray(non_members, dtype=np.float64)
    if len(members) == 0 or len(non_members) == 0:
        raise ValueError(f"AUC needs members and non-members, got {len(members)} and {len(non_members)}")
    return float(_auc_from_ranks(members[None, :], non_members[None, :])[0])


def _auc_from_ranks(members: np.ndarray, non_members: np.ndarray) -> np.ndarray:
    """AUC of every row of (members, non_members), from average ranks (ties get their mean rank)."""
    from scipy.stats import rankdata

    n_m, n_n = members.shape[1], non_members.shape[1]
    ranks = rankdata(np.concatenate([members, non_members], axis=1), axis=1)
    # U = (sum of the members' ranks) - n_m (n_m + 1) / 2
    u = ranks[:, :n_m].sum(axis=1) - n_m * (n_m + 1) / 2.0
    return u / (n_m * n_n)


@dataclass(frozen=True)
class AucResult:
    """AUC of one attack with its percentile bootstrap interval."""

    auc: float
    low: float
    high: float
    #: |AUC - 0.5|: how far the attack is from guessing
    advantage: float
    members: int
    non_members: int
    #: coverage of the interval [low, high]
    level: float = 0.95

    def to_json(self) -> dict[str, float | int]:
        return {"auc": self.auc, "ci_low": self.low, "ci_high": self.high, "level": self.level,
                "distance_from_chance": self.advantage, "members": self.members, "non_members": self.non_members}  # fmt: skip


def membership_auc(
    members: Sequence[float],
    non_members: Sequence[float],
    *,
    bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> AucResult:
    """AUC of "higher score = member" and its percentile bootstrap interval at ``level``.

    Each bootstrap sample redraws members and non-members with replacement, separately, so the
    interval reflects the size of both sets.
    """
    if bootstrap < 1:
        raise ValueError(f"bootstrap must be >= 1, got {bootstrap}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    members = np.asarray(members, dtype=np.float64)
    non_members = np.asarray(non_members, dtype=np.float64)
    point = auc(members, non_members)
    rng = np.random.default_rng(seed)
    samples = []
    for start in range(0, bootstrap, chunk):
        rows = min(chunk, bootstrap - start)
        m = members[rng.integers(0, len(members), size=(rows, len(members)))]
        n = non_members[rng.integers(0, len(non_members), size=(rows, len(non_members)))]
        samples.append(_auc_from_ranks(m, n))
    values = np.concatenate(samples)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return AucResult(point, float(low), float(high), abs(point - 0.5), len(members), len(non_members), level)


@dataclass(frozen=True)
class KsResult:
    """Two-sample KS statistic (largest gap between the two empirical CDFs), its two-sided p-value,
    and the signed one-sided tests: ``lower_p`` of "``a`` tends lower than ``b``" (statistic
    :math:`D^+ = \\max_x F_a(x) - F_b(x)`), ``higher_p`` of "``a`` tends higher" (:math:`D^-`).

    The two-sided statistic has no direction: a forget set moved from lower to higher loss than the
    held-out set can show the same :math:`D` before and after; the signed ones tell the two apart.
    """

    statistic: float
    p_value: float
    lower_statistic: float = float("nan")
    lower_p: float = float("nan")
    higher_statistic: float = float("nan")
    higher_p: float = float("nan")

    @property
    def direction(self) -> str:
        """Which way ``a`` lies from ``b``: the side with the larger one-sided statistic."""
        if self.lower_statistic == self.higher_statistic:
            return "neither lower nor higher"
        return "lower" if self.lower_statistic > self.higher_statistic else "higher"

    def to_json(self) -> dict[str, float | str]:
        return {"statistic": self.statistic, "p_value": self.p_value, "lower_statistic": self.lower_statistic,
                "lower_p": self.lower_p, "higher_statistic": self.higher_statistic, "higher_p": self.higher_p,
                "direction": self.direction}  # fmt: skip


def two_sample_ks(a: Sequence[float], b: Sequence[float]) -> KsResult:
    """Two-sample KS tests of "``a`` and ``b`` come from one distribution": two-sided and both one-sided."""
    from scipy.stats import ks_2samp

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"the KS test needs two non-empty samples, got {len(a)} and {len(b)}")
    both = ks_2samp(a, b)
    # scipy's "greater": the CDF of a lies above that of b somewhere, i.e. a tends lower
    lower, higher = ks_2samp(a, b, alternative="greater"), ks_2samp(a, b, alternative="less")
    return KsResult(float(both.statistic), float(both.pvalue), float(lower.statistic), float(lower.pvalue),
                    float(higher.statistic), float(higher.pvalue))  # fmt: skip


@dataclass(frozen=True)
class Effect:
    """A mean difference with its two-sided ``level`` t interval, its one-sided p-value and the
    smallest effect detectable at this size.

    ``p_greater`` is the one-sided p-value of :math:`H_1`: the true effect is above 0 (the direction
    the caller states). ``detectable`` is :math:`(t_{1-\\alpha/2} + t_{0.8}) \\cdot SE`: the
    effect that an interval of this width excludes from 0 four times in five.
    """

    estimate: float
    low: float
    high: float
    se: float
    p_greater: float
    detectable: float
    sizes: tuple[int, ...]
    level: float = 0.95

    def to_json(self) -> dict[str, float | list[int]]:
        return {"estimate": self.estimate, "ci_low": self.low, "ci_high": self.high, "level": self.level, "se": self.se,
                "p_greater": self.p_greater, "detectable": self.detectable, "sizes": list(self.sizes)}  # fmt: skip


def _effect(estimate: float, se: float, df: float, sizes: tuple[int, ...], level: float) -> Effect:
    from scipy.stats import t

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not np.isfinite(df) or df <= 0:
        nan = float("nan")
        return Effect(float(estimate), nan, nan, nan, nan, nan, sizes, level)
    if se == 0.0:
        # every example moved by the same amount: the interval is the point itself
        p = 0.0 if estimate > 0 else 1.0
        return Effect(float(estimate), float(estimate), float(estimate), 0.0, p, 0.0, sizes, level)
    quantile = float(t.ppf(1.0 - (1.0 - level) / 2.0, df))
    half = quantile * se
    detectable = (quantile + float(t.ppf(POWER, df))) * se
    return Effect(float(estimate), float(estimate - half), float(estimate + half), float(se),
                  float(t.sf(estimate / se, df)), float(detectable), sizes, level)  # fmt: skip


def mean_difference(a: Sequence[float], b: Sequence[float], *, level: float = 0.95) -> Effect:
    """:math:`\\bar a - \\bar b` of two independent samples, Welch's t interval
    (:math:`SE^2 = s_a^2/n_a + s_b^2/n_b`, Welch-Satterthwaite degrees of freedom)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"a mean difference needs two non-empty samples, got {len(a)} and {len(b)}")
    sizes = (len(a), len(b))
    if len(a) < 2 or len(b) < 2:
        return _effect(a.mean() - b.mean(), float("nan"), float("nan"), sizes, level)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else float(len(a) + len(b) - 2)
    return _effect(float(a.mean() - b.mean()), se, df, sizes, level)


def mean_change(before: Sequence[float], after: Sequence[float], *, level: float = 0.95) -> Effect:
    """:math:`\\overline{before - after}` of paired values (the same examples scored twice), one-sample t interval."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.shape != after.shape or before.ndim != 1 or len(before) == 0:
        raise ValueError(f"paired values need two non-empty 1-D arrays of one length, got {before.shape} and {after.shape}")
    change = before - after
    if len(change) < 2:
        return _effect(float(change.mean()), float("nan"), float("nan"), (len(change),), level)
    se = float(change.std(ddof=1) / np.sqrt(len(change)))
    return _effect(float(change.mean()), se, float(len(change) - 1), (len(change),), level)


def difference_of_differences(
    forget_before: Sequence[float],
    forget_after: Sequence[float],
    heldout_before: Sequence[float],
    heldout_after: Sequence[float],
    *,
    level: float = 0.95,
) -> Effect:
    """How much more the forget set moved than the held-out set:
    :math:`\\overline{(f_a - f_b)} - \\overline{(h_a - h_b)}` over per-example values scored before
    (``_b``) and after (``_a``), with Welch's interval on the two sets of paired changes.

    Positive = the forget set's value rose more (for a loss: it became less known than the held-out
    control did). Zero when nothing changed: the model as it was never passes.
    """
    forget_before, forget_after = np.asarray(forget_before, np.float64), np.asarray(forget_after, np.float64)
    heldout_before, heldout_after = np.asarray(heldout_before, np.float64), np.asarray(heldout_after, np.float64)
    if forget_before.shape != forget_after.shape or heldout_before.shape != heldout_after.shape:
        raise ValueError("before and after must score the same examples: "
                         f"forget {forget_before.shape} vs {forget_after.shape}, held-out {heldout_before.shape} vs {heldout_after.shape}")  # fmt: skip
    return mean_difference(forget_after - forget_before, heldout_after - heldout_before, level=level)
