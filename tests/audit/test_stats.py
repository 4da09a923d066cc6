"""AUC, its bootstrap interval and the KS test against hand-computed values and scipy/sklearn."""

import numpy as np
import pytest

from dualoptim.audit import auc, membership_auc, two_sample_ks
from dualoptim.audit.stats import difference_of_differences, mean_change, mean_difference


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


def test_the_auc_interval_is_a_95_percent_interval():
    """On large samples the bootstrap interval is AUC +- 1.96 standard errors (Hanley and McNeil's
    analytic SE); a 90% interval reported as 95% would be +- 1.64 and fail this."""
    rng = np.random.default_rng(3)
    members, non_members = rng.normal(0.5, 1, 2000), rng.normal(0, 1, 2000)
    result = membership_auc(members, non_members, bootstrap=2000, seed=1)
    a, n = result.auc, 2000
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = np.sqrt((a * (1 - a) + (n - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (n * n))
    assert (result.high - result.low) / (2 * se) == pytest.approx(1.96, abs=0.12)
    assert result.level == 0.95 and result.to_json()["level"] == 0.95


def test_mean_differences_match_scipy_and_have_95_percent_t_intervals():
    from scipy import stats

    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 1.0, 40), rng.normal(0.4, 2.0, 60)
    effect = mean_difference(a, b)
    welch = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert effect.p_greater == pytest.approx(welch.pvalue)
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (effect.low, effect.high) == pytest.approx((interval.low, interval.high))
    paired = mean_change(a, a - 0.3 + rng.normal(0, 0.1, 40))
    assert paired.estimate == pytest.approx(0.3, abs=0.05) and paired.low > 0.2 and paired.sizes == (40,)
    # the difference of differences: forget loss rose by 1, held-out by 0.2
    did = difference_of_differences(b[:40], b[:40] + 1.0, a, a + 0.2)
    assert did.estimate == pytest.approx(0.8) and did.low == did.high == pytest.approx(0.8) and did.p_greater == 0.0
    # nothing changed: zero, with a zero-width interval, never above 0
    none = difference_of_differences(a, a, b, b)
    assert (none.estimate, none.low, none.high, none.p_greater) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="same examples"):
        difference_of_differences(a, a[:3], b, b)


def test_the_smallest_detectable_effect_shrinks_with_the_square_root_of_the_size():
    rng = np.random.default_rng(5)
    small = mean_difference(rng.normal(0, 1, 25), rng.normal(0, 1, 25))
    large = mean_difference(rng.normal(0, 1, 400), rng.normal(0, 1, 400))
    assert small.detectable == pytest.approx(2.8 * np.sqrt(2 / 25), rel=0.25)  # (1.96 + 0.84) SE
    assert large.detectable < small.detectable / 3


def test_the_signed_ks_test_says_which_way_the_forget_losses_lie():
    rng = np.random.default_rng(6)
    heldout = rng.normal(1.0, 0.3, 300)
    lower, higher = two_sample_ks(heldout - 0.5, heldout), two_sample_ks(heldout + 0.5, heldout)
    assert lower.statistic == pytest.approx(higher.statistic)  # the two-sided statistic has no direction
    assert lower.direction == "lower" and lower.lower_p < 1e-10 and lower.higher_p > 0.5
    assert higher.direction == "higher" and higher.higher_p < 1e-10 and higher.lower_p > 0.5
