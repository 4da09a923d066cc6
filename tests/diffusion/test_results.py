"""results.json of the diffusion task: spread over seeds per class, the do-nothing row and the "did not unlearn" flag."""

import math

import pytest

from dualoptim.diffusion.config import DiffusionConfig
from dualoptim.diffusion.report import markdown_table
from dualoptim.diffusion.results import build_results, did_not_unlearn, fa_noise

CLASSES = ("zero", "one", "two")


def _original(seed, fa_one, fa_two):
    return {"seed": seed, "sample_accuracy": {"zero": 90.0 + seed, "one": fa_one, "two": fa_two},
            "before": {"1": {"FA": fa_one, "FD": 10.0 + seed, "kept_accuracy": 70.0},
                       "2": {"FA": fa_two, "FD": 11.0, "kept_accuracy": 71.0}},
            "pretrain_seconds": 5.0, "pretrain_steps": 100, "classifier_seconds": 1.0}  # fmt: skip


def _run(cls, seed, fa, strategy="dual"):
    return {"class": cls, "class_name": CLASSES[cls], "method": "SA", "strategy": strategy, "seed": seed,
            "metrics": {"FA": fa, "FD": 12.0 + seed, "kept_accuracy": 60.0}, "seconds": 3.0 + seed}  # fmt: skip


def _results(runs):
    config = DiffusionConfig()
    config.eval.forget_samples = 100
    originals = [_original(s, fa_one, 2.0) for s, fa_one in enumerate([80.0, 84.0, 82.0])]
    return build_results(config, {}, originals, runs, 1.0, classes=CLASSES, distance="FD (classifier features)")


def test_fa_noise_is_the_controls_spread_over_seeds_floored_by_the_binomial_spread_of_one_seed():
    assert fa_noise({0: 70.0, 1: 90.0, 2: 80.0}, 100) == pytest.approx(10.0)  # measured std 10 > binomial 4
    # measured std 2 < binomial 100 sqrt(.82 x .18 / 100) = 3.84: the floor
    assert fa_noise({0: 80.0, 1: 84.0, 2: 82.0}, 100) == pytest.approx(100 * math.sqrt(0.82 * 0.18 / 100))
    assert fa_noise({0: 50.0, 1: 50.0, 2: 50.0}, 100) == pytest.approx(5.0)  # no measured spread: the floor
    assert fa_noise({0: 0.0, 1: 0.0}, 100) == 0.0


def test_a_run_within_seed_noise_of_doing_nothing_did_not_unlearn_and_one_well_below_did():
    control = {0: 80.0, 1: 84.0, 2: 82.0}
    assert did_not_unlearn({0: 79.0, 1: 80.0, 2: 76.0}, control, 4.0)  # mean 78.3 >= 82 - 8
    assert not did_not_unlearn({0: 70.0, 1: 75.0, 2: 71.0}, control, 4.0)  # mean 72 < 74
    # paired on the run's seeds only: seed 1 alone compares with the control's 84
    assert did_not_unlearn({1: 77.0}, control, 4.0) and not did_not_unlearn({1: 75.0}, control, 4.0)
    # a class the original never draws cannot count as unlearned
    assert did_not_unlearn({0: 0.0}, {0: 0.0}, 0.0)


def test_a_run_without_a_paired_control_seed_is_an_error_naming_both():
    with pytest.raises(ValueError, match=r"no seed of the run \(\[5\]\) has a do-nothing control \(\[0, 1\]\)"):
        did_not_unlearn({5: 1.0}, {0: 1.0, 1: 2.0}, 1.0)


def test_rows_keep_every_seed_per_class_and_the_std_is_over_seeds_not_classes():
    runs = [_run(1, 0, 10.0), _run(1, 1, 20.0), _run(1, 2, 30.0), _run(2, 0, 1.0), _run(2, 1, 2.0), _run(2, 2, 3.0),
            _run(1, 0, 81.0, "alternate"), _run(1, 1, 80.0, "alternate"), _run(1, 2, 83.0, "alternate")]  # fmt: skip
    results = _results(runs)
    control, dual, alternate = results["rows"]
    assert control["control"] and control["method"] == "Original" and control["strategy"] is None
    assert control["per_class"]["one"]["FA"] == {"mean": 82.0, "std": pytest.approx(2.0),
                                                 "per_seed": {"0": 80.0, "1": 84.0, "2": 82.0}}  # fmt: skip
    assert control["per_class"]["one"]["FA_noise"] == pytest.approx(3.842, abs=1e-3)
    assert dual["per_class"]["one"]["FA"]["std"] == pytest.approx(10.0)  # 10, 20, 30 over seeds
    assert dual["per_class"]["two"]["FA"]["std"] == pytest.approx(1.0)
    assert dual["per_class"]["one"]["seeds"] == [0, 1, 2] and dual["per_class"]["one"]["seconds"]["mean"] == 4.0
    # dual forgets "one" (20 << 82 - 2 x 3.84); "two" is drawn 2% of the time by the original (noise 1.4): 2.0 is not below it
    assert not dual["per_class"]["one"]["did_not_unlearn"] and dual["per_class"]["two"]["did_not_unlearn"]
    assert dual["did_not_unlearn"] == ["two"]
    assert alternate["per_class"]["one"]["did_not_unlearn"] and alternate["did_not_unlearn"] == ["one"]
    accuracy = results["original"]["sample_accuracy"]
    assert accuracy["zero"]["mean"] == 91.0 and accuracy["zero"]["per_seed"] == {"0": 90.0, "1": 91.0, "2": 92.0}
    assert results["original"]["recognised_classes"] == ["zero", "one"]
    assert results["original"]["sample_accuracy_mean"] == pytest.approx((91.0 + 82.0 + 2.0) / 3)
    assert results["seeds"] == [0, 1, 2] and math.isclose(results["run_seconds"], sum(3.0 + r["seed"] for r in runs))


def test_the_report_prints_one_table_per_forgotten_class_with_the_do_nothing_row_and_the_flag():
    results = _results([_run(1, s, fa) for s, fa in enumerate([81.0, 80.0, 83.0])])
    table = markdown_table(results)
    one = table[table.index("## Forgotten class: one"):table.index("## Forgotten class: two")]
    assert "| Do nothing (original) | – | 82.0 ± 2.0 | 11.00 ± 1.00 | 70.0 ± 0.0 | – | 3 | control (FA noise 3.8) |" in one
    assert "| SA | dual | 81.3 ± 1.5 | 13.00 ± 1.00 | 60.0 ± 0.0 | 4 | 3 | **did not unlearn** |" in one
    assert "2 of 3 classes recognised" in table


def test_each_seed_has_its_own_noise_bank_and_seed_0_keeps_the_single_seed_bank():
    from types import SimpleNamespace

    import torch

    from dualoptim.diffusion.benchmark import _EVAL_SEED, Benchmark

    config = DiffusionConfig()
    config.eval.forget_samples, config.eval.kept_samples = 5, 3
    fake = SimpleNamespace(config=config, train_images=torch.zeros(2, 1, 4, 4), data=SimpleNamespace(num_classes=2), _noise={})
    zero, one = Benchmark.noise_bank(fake, 0), Benchmark.noise_bank(fake, 1)
    assert zero[1].shape == (5, 1, 4, 4)
    assert torch.equal(zero[1], torch.randn((5, 1, 4, 4), generator=torch.Generator().manual_seed(_EVAL_SEED + 1)))
    assert not torch.equal(zero[1], one[1]) and not torch.equal(zero[0], zero[1])
    assert Benchmark.noise_bank(fake, 1) is one  # cached: every model of a seed grows from the same noise
