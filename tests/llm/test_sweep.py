"""``dualoptim sweep --task tofu``: forget lr x strategy, selected by OVR on task 1, resumable."""

import json
import statistics

import pytest

from dualoptim.cli import main
from dualoptim.config import load_config
from dualoptim.llm.config import TofuConfig, forget_lr_of
from dualoptim.llm.sweep import OBJECTIVE, scaled_config, sweep_points
from dualoptim.sweep import best_rates
from tests.llm.test_cli_tofu import TINY


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALOPTIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _results(ovr_by_task):
    runs = [{"task": t, "seed": 0, "metrics": {"OVR": v, "UFE": v, "MU": 50.0}} for t, v in ovr_by_task.items()]
    overall = statistics.fmean(ovr_by_task.values())
    return {"rows": [
        {"loss": "target", "strategy": "-", "runs": [], "metrics": {}},
        {"loss": "ME+GD", "strategy": "dual", "runs": runs, "metrics": {"OVR": {"mean": overall, "std": 1.0}}},
    ]}  # fmt: skip


def test_selection_is_by_ovr_on_the_selection_task_not_the_mean_over_tasks():
    config = load_config(TofuConfig, "tofu", ["tofu-tiny"], ["tasks=1,2"])
    grid = {"ME+GD": {"dual": []}}
    # x0.1 is better on task 1; x10 is better on average over the tasks
    for factor, ovr in ((0.1, {"1": 60.0, "2": 10.0}), (10, {"1": 40.0, "2": 90.0})):
        point = sweep_points(_results(ovr), scaled_config(config, factor), "1")[("ME+GD", "dual")]
        grid["ME+GD"]["dual"].append({**point, "factor": factor})
    assert [p["forget_lr"] for p in grid["ME+GD"]["dual"]] == pytest.approx([1e-4, 1e-2])
    assert [p["OVR"] for p in grid["ME+GD"]["dual"]] == [60.0, 40.0]
    assert [p["OVR_all_tasks"] for p in grid["ME+GD"]["dual"]] == [35.0, 65.0]
    assert best_rates(grid, OBJECTIVE, "forget_lr") == {"ME+GD": {"dual": 1e-4}}
    # on task 2 the other rate wins
    point = sweep_points(_results({"1": 40.0, "2": 90.0}), scaled_config(config, 10), "2")[("ME+GD", "dual")]
    assert point["OVR"] == 90.0
    # a stopped run leaves its point without a score: it can never be selected
    stopped = _results({"1": 99.0})
    stopped["rows"][1]["runs"][0]["stopped"] = "non-finite loss"
    point = sweep_points(stopped, config, "1")[("ME+GD", "dual")]
    assert point["OVR"] is None and point["failed"] == 1


def test_scaled_config_scales_each_pairs_own_rate_and_narrows_to_pairs():
    config = load_config(TofuConfig, "tofu", ["tofu-tiny"], ["unlearn.forget_lrs.ME+GD.dual=4e-3"])
    scaled = scaled_config(config, 0.5)
    assert forget_lr_of(scaled, "ME+GD", "dual") == pytest.approx(2e-3)
    assert forget_lr_of(scaled, "ME+GD", "joint") == pytest.approx(5e-4)
    assert forget_lr_of(config, "ME+GD", "dual") == 4e-3  # the input is not modified
    assert forget_lr_of(config, "ME+GD", "dual-8bit") == 4e-3  # the 8-bit twin takes dual's rate
    assert forget_lr_of(config, "ME+GD", "dual+-8bit") == config.unlearn.forget_lr
    narrow = scaled_config(config, 2, {"IDK+GD": ["dual+"]})
    assert (narrow.losses, narrow.strategies) == (["IDK+GD"], ["dual+"])
    # the scaled rate is the one best.yaml would write, so a tuned run finds the sweep's run by key
    ninefold = load_config(TofuConfig, "tofu", ["tofu-tiny"], ["unlearn.forget_lr=1e-3"])
    assert 9 * 1e-3 != 0.009 and forget_lr_of(scaled_config(ninefold, 9), "ME+GD", "dual") == 0.009


def test_sweep_end_to_end_resumes_and_writes_a_preset_layer(tofu_dir, tmp_path, cache, capsys, monkeypatch):
    from dualoptim.llm.benchmark import TofuBenchmark

    evaluated = []
    original = TofuBenchmark._evaluate_references
    monkeypatch.setattr(
        TofuBenchmark, "_evaluate_references", lambda self, task: evaluated.append(task) or original(self, task)
    )
    out = tmp_path / "sweep"
    argv = ["sweep", "--task", "tofu", "--preset", "tofu-tiny", "--data", str(tofu_dir), "--tasks", "1,2",
            "--losses", "ME+GD", "--strategies", "dual", "--factors", "0.1,10", "--extend", "0", "--out", str(out), *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| ME+GD | dual | 0.0001: " in printed and "OVR at each forget_lr" in printed
    assert evaluated == ["1", "2"]  # the references are evaluated once, not once per factor
    summary = json.loads((out / "sweep.json").read_text())
    # the selection averages both tasks (the default: every task run), with its sample std
    assert summary["selection"] == {"metric": "OVR", "higher_is_better": True, "tasks": ["1", "2"], "seeds": [0],
                                    "std": "sample std (ddof 1) over the selection runs"}  # fmt: skip
    points = summary["grid"]["ME+GD"]["dual"]
    assert [(p["factor"], p["forget_lr"]) for p in points] == [(0.1, pytest.approx(1e-4)), (10, pytest.approx(1e-2))]
    for point in points:
        # each point is the mean OVR over tasks 1 and 2 of the runs in its factor's folder, made at its rate
        results = json.loads((out / f"factor-{point['factor']:g}" / "results.json").read_text())
        assert results["config"]["unlearn"]["forget_lrs"]["ME+GD"]["dual"] == pytest.approx(point["forget_lr"])
        row = next(r for r in results["rows"] if (r["loss"], r["strategy"]) == ("ME+GD", "dual"))
        ovrs = [r["metrics"]["OVR"] for r in row["runs"]]
        assert point["OVR"] == pytest.approx(statistics.fmean(ovrs))
        assert point["criterion_std"] == pytest.approx(statistics.stdev(ovrs))
        assert point["did_not_unlearn"] is row["did_not_unlearn"]
    # the target here never learnt the forget set (a tiny model, 2 epochs): doing nothing scores the
    # target's own OVR over tasks 1 and 2, better than any rate, so the pair is refused and best.yaml says why
    target = next(r for r in results["rows"] if r["loss"] == "target")
    assert summary["do_nothing"] == {"ME+GD": pytest.approx(target["metrics"]["OVR"]["mean"])}
    assert all(p["OVR"] <= summary["do_nothing"]["ME+GD"] for p in points)
    (refusal,) = summary["refused"]
    assert summary["best_forget_lr"] == {} and refusal["control"] == pytest.approx(summary["do_nothing"]["ME+GD"])
    assert "refused (see below)" in (out / "sweep.md").read_text()
    header = (out / "best.yaml").read_text()
    # the reason names why: every rate within seed noise of doing nothing, else the control's better OVR
    if all(p["did_not_unlearn"] for p in points):
        assert "# ME+GD/dual: no forget_lr selected: every finished forget_lr did not unlearn" in header
    else:
        assert "# ME+GD/dual: no forget_lr selected: the do-nothing control scores OVR" in header
    tuned = load_config(TofuConfig, "tofu", ["tofu-tiny", str(out / "best.yaml")])
    assert forget_lr_of(tuned, "ME+GD", "dual") == tuned.unlearn.forget_lr  # no rate written for it
    assert (out / "sensitivity.png").stat().st_size > 0
    # resume: nothing is recomputed
    done = out / "factor-10" / "runs" / "task2" / "MEplusGD__dual__seed0.json"
    stamp = done.stat().st_mtime_ns
    evaluated.clear()
    assert main(argv) == 0
    assert done.stat().st_mtime_ns == stamp and json.loads((out / "sweep.json").read_text()) == summary
    # a per-pair rate keys a run as the same single rate does: `dualoptim tofu` at x10 finds them all done
    assert main(["tofu", "--preset", "tofu-tiny", "--data", str(tofu_dir), "--tasks", "1,2", "--losses", "ME+GD",
                 "--strategies", "dual", "--set", "unlearn.forget_lr=1e-2", "--out", str(out / "factor-10"),
                 *TINY]) == 0  # fmt: skip
    assert done.stat().st_mtime_ns == stamp and evaluated == []


def test_sweep_bad_input_is_one_line(tofu_dir, tmp_path, cache, capsys):
    base = ["sweep", "--task", "tofu", "--data", str(tofu_dir), "--out", str(tmp_path / "s"), *TINY]
    assert main([*base, "--select-task", "3", "--tasks", "1"]) == 2
    assert "the selection task '3' is not among the tasks run ['1']" in capsys.readouterr().err
    assert main([*base, "--select-tasks", "1", "--tasks", "1,2"]) == 2
    assert ("selection on tasks ['1'] x seeds [0] is one run per rate, which cannot tell a difference from "
            "task-to-task noise") in capsys.readouterr().err  # fmt: skip
    assert main([*base, "--factors", "1", "--tasks", "1,2"]) == 2
    assert "a grid of one factor (1) has no step to extend by" in capsys.readouterr().err
    assert main([*base, "--factors", "1,1"]) == 2
    assert "sweep factors must differ" in capsys.readouterr().err
    assert main(["sweep", "--tasks", "1", "--out", str(tmp_path / "v")]) == 2
    assert "--tasks apply to --task tofu only" in capsys.readouterr().err
    assert main([*base, "--set", "unlearn.forget_lrs.ME+GD.dual=-1"]) == 2
    assert "unlearn.forget_lrs.ME+GD.dual must be > 0, got -1" in capsys.readouterr().err


def test_points_on_the_committed_evidence_flag_runs_that_recite_and_compare_with_the_right_control():
    """tofu-small: the `dual` rows of IDK+GD recite the forget answers as the target does (forget ROUGE
    1.00); they are flagged, and the targeted losses are compared with the target scored targeted."""
    from pathlib import Path

    from dualoptim.llm.sweep import control_scores

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "tofu-small" / "results.json"
    results = json.loads(path.read_text())
    config = load_config(TofuConfig, "tofu", ["tofu-tiny"])
    points = sweep_points(results, config, ["1", "2", "3"])
    assert points[("IDK+GD", "dual")]["did_not_unlearn"] is True
    assert points[("GA+GD", "dual")]["did_not_unlearn"] is False
    row = next(r for r in results["rows"] if (r["loss"], r["strategy"]) == ("GA+GD", "dual"))
    ovrs = [r["metrics"]["OVR"] for r in row["runs"]]
    assert points[("GA+GD", "dual")]["OVR"] == pytest.approx(statistics.fmean(ovrs))
    assert points[("GA+GD", "dual")]["criterion_std"] == pytest.approx(statistics.stdev(ovrs))
    controls = control_scores(results, ["GA+GD", "IDK+GD"], ["1", "2", "3"])
    target = results["rows"][0]
    assert controls["GA+GD"] == pytest.approx(target["metrics"]["OVR"]["mean"])  # untargeted: its own row
    # this evidence predates the offline IDK judge: its TFE was Token Entropy alone, so the targeted
    # control is absent rather than the fluency score that rewarded doing nothing (92.36)
    assert controls["IDK+GD"] is None
    # with an IDK judge in the target's scores, the targeted control is (MU + TFE) / 2, TFE the harmonic
    # mean of Token Entropy and the judge (here every forget answer judged a refusal: IDK = 1)
    for run in target["runs"]:
        run["metrics"]["forget/IDK Refusal"] = 1.0
    entropy = [r["metrics"]["forget/Token Entropy"] for r in target["runs"]]
    expected = [(r["metrics"]["MU"] + 2 * e / (e + 1)) / 2 for r, e in zip(target["runs"], entropy)]
    assert control_scores(results, ["IDK+GD"], ["1", "2", "3"])["IDK+GD"] == pytest.approx(statistics.fmean(expected))
    # on one task the control is that task's
    assert control_scores(results, ["GA+GD"], ["2"])["GA+GD"] == pytest.approx(target["runs"][1]["metrics"]["OVR"])


def test_the_sensitivity_figure_draws_every_loss_with_failed_and_flagged_rates(tmp_path):
    from dualoptim.llm.report import SENSITIVITY, plot_sensitivity

    def point(rate, ovr, flagged=False):
        scores = {} if ovr is None else {n: ovr for n in SENSITIVITY} | {f"{n} std": 0.02 for n in SENSITIVITY}
        return {"forget_lr": rate, "OVR": ovr, **scores, "did_not_unlearn": flagged, "failed": int(ovr is None)}

    summary = {
        "split": "forget10", "selection": {"tasks": ["1", "2"], "seeds": [0]},
        "grid": {"IDK+GD": {"dual": [point(1e-4, 0.9, True), point(1e-3, 0.7), point(1e-2, None)]},
                 "GA+GD": {"alternate": [point(1e-3, 0.5), point(2e-3, 0.6)]}},
        "best_forget_lr": {"GA+GD": {"alternate": 2e-3}}, "do_nothing": {"IDK+GD": 0.92, "GA+GD": None},
    }  # fmt: skip
    from PIL import Image

    sizes = []
    for grid in (summary["grid"], {"IDK+GD": summary["grid"]["IDK+GD"]}):
        path = plot_sensitivity({**summary, "grid": grid}, tmp_path / f"sensitivity-{len(grid)}.png")
        with Image.open(path) as image:
            sizes.append(image.size)
    # one panel row per loss (two, then one), three score columns
    assert sizes[0][0] == sizes[1][0] and sizes[0][1] == pytest.approx(2 * sizes[1][1], rel=0.02)
