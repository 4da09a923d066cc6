"""Retrain-free statistics of forgetting (``docs/design.md`` §7): membership-inference AUC with a
bootstrap confidence interval, and a two-sample Kolmogorov-Smirnov test.

Both compare the forget set with a held-out set the model never saw. A model that has forgotten
the forget set treats it like unseen data: an attack separates the two sets no better than chance
(AUC 0.5) and their loss distributions are alike (a large KS p-value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["AucResult", "KsResult", "auc", "membership_auc", "two_sample_ks"]


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

    def to_json(self) -> dict[str, float | int]:
        return {"auc": self.auc, "ci_low": self.low, "ci_high": self.high, "distance_from_chance": self.advantage,
                "members": self.members, "non_members": self.non_members}  # fmt: skip


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
    return AucResult(point, float(low), float(high), abs(point - 0.5), len(members), len(non_members))


@dataclass(frozen=True)
class KsResult:
    """Two-sample KS statistic (largest gap between the two empirical CDFs) and its p-value."""

    statistic: float
    p_value: float

    def to_json(self) -> dict[str, float]:
        return {"statistic": self.statistic, "p_value": self.p_value}


def two_sample_ks(a: Sequence[float], b: Sequence[float]) -> KsResult:
    """Two-sided two-sample KS test of "``a`` and ``b`` come from one distribution"."""
    from scipy.stats import ks_2samp

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"the KS test needs two non-empty samples, got {len(a)} and {len(b)}")
    result = ks_2samp(a, b)
    return KsResult(float(result.statistic), float(result.pvalue))
