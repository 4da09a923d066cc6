import math

import pytest
import torch

from dualoptim.metrics.aggregate import gap, mean_std, std_score, summarize
from dualoptim.metrics.mia import entropy, mia_entropy, mia_svc
from dualoptim.vision.metrics import accuracy, evaluate


def test_accuracy_and_entropy_by_hand():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 1])) == 50.0
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])
    expected = [math.log(2), 0.0, -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    assert entropy(probs).tolist() == pytest.approx(expected, abs=1e-6)


def test_entropy_mia_calls_low_entropy_members():
    retain = torch.full((50,), 0.05) + torch.rand(50) * 0.01   # confident: members
    test = torch.full((50,), 1.5) + torch.rand(50) * 0.01       # uncertain: non-members
    assert mia_entropy(retain, test, torch.full((10,), 0.05)) == 100.0
    assert mia_entropy(retain, test, torch.full((10,), 1.5)) == 0.0
    mixed = torch.cat([torch.full((3,), 0.05), torch.full((7,), 1.5)])
    assert mia_entropy(retain, test, mixed) == pytest.approx(30.0)


def test_svc_mia_efficacy_is_share_called_non_member():
    def one_hot_like(confidence, n):
        p = torch.full((n, 2), 1.0 - confidence)
        p[:, 0] = confidence
        return p

    labels = torch.zeros(40, dtype=torch.long)
    efficacy = mia_svc(one_hot_like(0.99, 40), labels, one_hot_like(0.55, 40), labels, one_hot_like(0.55, 10), labels[:10])
    assert efficacy == 100.0


def test_mean_std_is_population():
    mean, std = mean_std([1.0, 3.0])
    assert (mean, std) == (2.0, 1.0)  # ddof = 0; ddof = 1 would give 1.414


def test_sfron_row_of_spec_gives_gap_051_std_233():
    # docs/design.md §4.1: SFRon on CIFAR-10 against the retrain reference.
    means = {"FA": 94.67, "RA": 99.83, "TA": 93.98, "MIA": 77.80}
    stds = {"FA": 3.03, "RA": 0.13, "TA": 0.56, "MIA": 5.61}
    reference = {"FA": 94.61, "RA": 100.00, "TA": 94.25, "MIA": 76.26}
    assert gap(means, reference) == pytest.approx(0.51, abs=1e-9)
    assert round(std_score(stds), 2) == 2.33
    assert std_score(stds) == pytest.approx(2.3325)


def test_summarize_by_hand():
    per_seed = [{"FA": 90.0, "RA": 100.0, "TA": 80.0, "MIA": 50.0}, {"FA": 94.0, "RA": 98.0, "TA": 80.0, "MIA": 60.0}]
    reference = {"FA": 95.0, "RA": 100.0, "TA": 81.0, "MIA": 50.0}
    summary = summarize(per_seed, reference)
    assert summary["metrics"]["FA"] == {"mean": 92.0, "std": 2.0, "gap": 3.0}
    assert summary["metrics"]["MIA"] == {"mean": 55.0, "std": 5.0, "gap": 5.0}
    assert summary["Gap"] == pytest.approx((3 + 1 + 1 + 5) / 4)
    assert summary["Std"] == pytest.approx((2 + 1 + 0 + 5) / 4)


def test_evaluate_returns_the_four_metrics(task):
    model, forget, retain = task
    metrics = evaluate(model, forget, retain, (torch.randn(40, 16), torch.randint(0, 4, (40,))), svc=True)
    assert set(metrics) == {"FA", "RA", "TA", "MIA", "MIA-SVC"}
    assert metrics["FA"] == 100.0 and metrics["RA"] == 100.0
    assert metrics["TA"] < 60.0  # random labels do not generalise


def test_metrics_over_runs_keeps_a_metric_only_when_every_run_has_it():
    from dualoptim.metrics.aggregate import metrics_over_runs

    records = [
        {"metrics": {"OVR": 0.5, "FQ": 0.1}},
        {"metrics": {"OVR": 0.7, "FQ": None}, "absent": {"FQ": "no retain model for task 2"}},
        {"stopped": "non-finite loss"},  # a stopped run has no metrics and does not count
    ]
    metrics, absent = metrics_over_runs(records, ddof=1)
    assert metrics["OVR"]["mean"] == pytest.approx(0.6) and metrics["OVR"]["std"] == pytest.approx(0.1414213, rel=1e-5)
    assert metrics["FQ"] is None and absent == {"FQ": "no retain model for task 2"}


def test_unlearning_check_is_within_the_larger_std_or_the_floor_on_every_forget_side_metric():
    from dualoptim.metrics.aggregate import unlearning_check

    control = {"FA": {"mean": 95.0, "std": 0.5}, "MIA": {"mean": 65.0, "std": 2.0}}
    # FA moved 0.8 (noise max(0.3, 0.5, 1) = 1), MIA 1.5 (noise 2): both within noise
    near = {"FA": {"mean": 94.2, "std": 0.3}, "MIA": {"mean": 66.5, "std": 1.0}}
    check = unlearning_check(near, control, ("FA", "MIA"), 1.0)
    assert check["did_not_unlearn"] is True
    assert check["metrics"]["FA"] == {"difference": pytest.approx(0.8), "noise": 1.0}
    assert check["metrics"]["MIA"]["noise"] == 2.0
    # one metric beyond its noise is enough to have unlearned
    assert unlearning_check({**near, "FA": {"mean": 93.0, "std": 0.3}}, control, ("FA", "MIA"), 1.0)["did_not_unlearn"] is False
    # one seed: the std is undefined (None), the floor is the noise
    one = {"FA": {"mean": 94.2, "std": None}}
    assert unlearning_check(one, {"FA": {"mean": 95.0, "std": None}}, ("FA",), 0.5)["did_not_unlearn"] is False
    # a failed run, or a control without the metrics, cannot be compared
    assert unlearning_check({}, control, ("FA", "MIA"), 1.0)["did_not_unlearn"] is None
    assert unlearning_check({"FA": None}, control, ("FA",), 1.0)["did_not_unlearn"] is None
    with pytest.raises(ValueError, match="the noise floor must be >= 0, got -1"):
        unlearning_check(near, control, ("FA",), -1)
