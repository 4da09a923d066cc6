"""AUC, its bootstrap interval and the KS test against hand-computed values and scipy/sklearn."""

import numpy as np
import pytest

from dualoptim.audit import auc, membership_auc, two_sample_ks


def test_auc_counts_pairs_and_halves_ties():
    # pairs (member, non-member): (3,1) (3,2) (2,1) win, (2,2) ties -> (3 + 0.5) / 4
    assert auc([3, 2], [1, 2]) == pytest.approx(3.5 / 4)
    assert auc([5, 6], [1, 2]) == 1.0 and auc([1, 2], [5, 6]) == 0.0
    assert auc([1.0, 1.0], [1.0]) == 0.5


def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    members, non_members = rng.normal(0.3, 1, 300).round(1), rng.normal(0, 1, 400).round(1)
    expected = roc_auc_score(np.r_[np.ones(300), np.zeros(400)], np.r_[members, non_members])
    assert auc(members, non_members) == pytest.approx(expected)


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small = membership_auc(rng.normal(0.5, 1, 100), rng.normal(0, 1, 100), bootstrap=300)
    large = membership_auc(rng.normal(0.5, 1, 3000), rng.normal(0, 1, 3000), bootstrap=300)
    for result in (small, large):
        assert result.low < result.auc < result.high
        assert result.advantage == pytest.approx(abs(result.auc - 0.5))
    assert large.high - large.low < (small.high - small.low) / 3
    assert large.low > 0.6  # a real separation is found (true AUC = Phi(0.5/sqrt 2) = 0.638)
    assert membership_auc([1, 2, 3], [0, 1], bootstrap=50, seed=3) == membership_auc([1, 2, 3], [0, 1], bootstrap=50, seed=3)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="members and non-members"):
        auc([], [1.0])
    with pytest.raises(ValueError, match="bootstrap must be"):
        membership_auc([1.0], [0.0], bootstrap=0)
    with pytest.raises(ValueError, match="non-empty"):
        two_sample_ks([], [1.0])


def test_ks_separates_shifted_samples_and_not_equal_ones():
    rng = np.random.default_rng(2)
    same = two_sample_ks(rng.normal(0, 1, 500), rng.normal(0, 1, 500))
    shifted = two_sample_ks(rng.normal(1, 1, 500), rng.normal(0, 1, 500))
    assert same.p_value > 0.01 and shifted.p_value < 1e-10
    assert two_sample_ks([0, 1, 2], [10, 11, 12]).statistic == 1.0
