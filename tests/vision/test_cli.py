"""`dualoptim bench / report / sweep` end to end on a digits benchmark that takes seconds."""

import json

import pytest

from dualoptim.cli import main
from dualoptim.metrics.aggregate import METRICS, summarize
from dualoptim.vision.benchmark import Benchmark


@pytest.fixture(scope="module")
def bench_out(tiny_bench_yaml, tmp_path_factory):
    """One benchmark shared by the tests below; each leaves the folder complete."""
    out = tmp_path_factory.mktemp("bench") / "out"
    assert main(["bench", "--preset", str(tiny_bench_yaml), "--out", str(out), "--no-progress"]) == 0
    return out


def test_bench_writes_results_table_and_plots(bench_out):
    results = json.loads((bench_out / "results.json").read_text())
    assert set(results["retrain"]["metrics"]) == set(METRICS)
    assert [(r["method"], r["strategy"]) for r in results["rows"]] == [
        ("GA", "alternate"), ("GA", "dual"), ("SFRon", "alternate"), ("SFRon", "dual")]
    reference = {m: results["retrain"]["metrics"][m]["mean"] for m in METRICS}
    for row in results["rows"]:
        assert set(row["metrics"]) == set(METRICS)
        assert all(set(row["metrics"][m]) == {"mean", "std", "gap"} for m in METRICS)
        assert [s["seed"] for s in row["per_seed"]] == [0, 1]
        assert row["seconds"] > 0 and not row["failed"]
        # Gap and Std are what the per-seed values give against the per-seed retrains.
        again = summarize(row["per_seed"], reference)
        assert row["Gap"] == pytest.approx(again["Gap"]) and row["Std"] == pytest.approx(again["Std"])
        assert len(row["curves"]["progress"]) == 3 and set(row["grad_norms"]) <= {"forget", "retain"}
    env = results["environment"]
    assert list(results)[:6] == ["task", "config", "environment", "command", "rows", "seconds"]
    assert results["task"] == "vision" and results["command"] == env["command"]
    assert env["command"].startswith("dualoptim bench") and env["versions"]["torch"] and "cpu" in env
    assert results["config"]["seeds"] == [0, 1] and (bench_out / "config.yaml").is_file()
    assert results["time_ratio"] > 0
    for name in ("table.md", "stability.png", "stability-SFRon.png", "grad-norms.png"):
        assert (bench_out / name).stat().st_size > 0
    table = (bench_out / "table.md").read_text()
    assert "| Retrain | – |" in table and "| SFRon | dual" in table


def test_the_do_nothing_row_is_the_original_scored_exactly_like_a_run(bench_out):
    from dualoptim.metrics.aggregate import unlearning_check

    results = json.loads((bench_out / "results.json").read_text())
    reference = {m: results["retrain"]["metrics"][m]["mean"] for m in METRICS}
    control = results["do_nothing"]
    # the original measured on each seed's split, aggregated over seeds as a run's per-seed values are
    per_seed = results["original"]["per_seed"]
    assert [s["seed"] for s in per_seed] == [0, 1] and control["per_seed"] == per_seed
    again = summarize(per_seed, reference)
    assert control["Gap"] == pytest.approx(again["Gap"]) and control["Std"] == pytest.approx(again["Std"])
    for m in METRICS:
        assert control["metrics"][m]["gap"] == pytest.approx(again["metrics"][m]["gap"])
    runs = {(r["seed"]): r for r in (json.loads(p.read_text()) for p in (bench_out / "runs").glob("Retrain__seed*.json"))}
    assert {s["seed"]: s["FA"] for s in per_seed} == {seed: r["original"]["FA"] for seed, r in runs.items()}
    table = (bench_out / "table.md").read_text()
    assert f"| do nothing (original) | – | {control['metrics']['FA']['mean']:.2f}" in table
    assert f"| {control['Gap']:.2f} | {control['Std']:.2f} | 0.0 |" in table
    for row in results["rows"]:
        check = unlearning_check(row["metrics"], control["metrics"], ("FA", "MIA"), 1.0)
        assert row["did_not_unlearn"] is check["did_not_unlearn"] and row["unlearning_check"] == check
        marked = f"| {row['method']} | {row['strategy']} (did not unlearn) |" in table
        assert marked is row["did_not_unlearn"]


def test_interrupted_benchmark_resumes_without_redoing_finished_runs(bench_out, tiny_bench_yaml, monkeypatch):
    calls = []
    original_run_one = Benchmark.run_one

    def counting(self, spec):
        calls.append((spec.method, spec.strategy, spec.seed))
        return original_run_one(self, spec)

    monkeypatch.setattr(Benchmark, "run_one", counting)
    (bench_out / "runs" / "SFRon__dual__seed1.json").unlink()  # as if interrupted during that run
    assert main(["bench", "--preset", str(tiny_bench_yaml), "--out", str(bench_out), "--no-progress"]) == 0
    assert calls == [("SFRon", "dual", 1)]


def test_report_regenerates_from_results_json(bench_out):
    (bench_out / "table.md").unlink()
    (bench_out / "stability.png").unlink()
    assert main(["report", str(bench_out)]) == 0
    assert (bench_out / "table.md").is_file() and (bench_out / "stability.png").is_file()


def test_report_of_a_folder_without_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert f"no such results file: {tmp_path}/results.json" in capsys.readouterr().err


def test_a_diverging_run_is_recorded_and_the_benchmark_goes_on(tiny_bench_yaml, tmp_path, capsys):
    out = tmp_path / "nan"
    args = ["bench", "--preset", str(tiny_bench_yaml), "--methods", "GA,SFRon", "--optimizers", "alternate",
            "--seeds", "0", "--out", str(out), "--no-progress"]
    layer = tmp_path / "diverge.yaml"
    layer.write_text("unlearn: {methods: {GA: {forget_lr: {alternate: 1.0e+30}}}}\n")
    assert main([*args, "--preset", str(layer)]) == 0
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["GA"]["metrics"] is None and "became" in rows["GA"]["failed"][0]["reason"]
    assert rows["SFRon"]["metrics"] is not None
    assert "stopped:" in (out / "table.md").read_text()
    printed = capsys.readouterr().out
    assert "# effective configuration" in printed and "forget_lr:" in printed and "| GA | alternate | failed" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "GA,Forgetron"], "unknown method 'Forgetron'"),
        (["--optimizers", "dual,sideways"], "unknown strategy 'sideways'"),
        (["--seeds", "0,x"], "--seeds expects ints, got 'x'"),
        (["--preset", "nosuchpreset"], "unknown preset 'nosuchpreset'"),
    ],
)
def test_bad_command_line_input_is_a_one_line_error(tiny_bench_yaml, tmp_path, capsys, extra, message):
    assert main(["bench", "--preset", str(tiny_bench_yaml), *extra, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("dualoptim bench: error:") and "\n" not in err


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("data: {forget_fraction: 1.5}", "forget fraction must be in (0, 1), got 1.5"),
        ("data: {forget: indices, forget_indices: IDX}", "forget indices out of range [0, 1437): [5000]"),
        ("data: {dataset: fashion-mnist, root: ROOT}", "/empty/fashion-mnist does not exist"),
        ("model: {checkpoint: JUNK}", "corrupt checkpoint"),
        ("model: {checkpoint: WIDE}", "does not match the model SmallCNN"),
    ],
)
def test_bad_data_and_checkpoints_are_one_line_errors(tiny_bench_yaml, tmp_path, capsys, layer, message):

    from dualoptim.vision.models import build_model
    from dualoptim.vision.training import save_checkpoint

    (tmp_path / "idx.txt").write_text("1 5000")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    save_checkpoint(tmp_path / "wide.pt", build_model("small-cnn", (1, 8, 8), 10, 32), {})
    (tmp_path / "empty").mkdir()
    text = (layer.replace("IDX", str(tmp_path / "idx.txt")).replace("ROOT", str(tmp_path / "empty"))
            .replace("JUNK", str(tmp_path / "junk.pt")).replace("WIDE", str(tmp_path / "wide.pt")))
    (tmp_path / "bad.yaml").write_text(text + "\n")
    rc = main(["bench", "--preset", str(tiny_bench_yaml), "--preset", str(tmp_path / "bad.yaml"),
               "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and "\n" not in err


def test_sweep_picks_the_forget_lr_of_lowest_gap_among_runs_that_unlearned(tiny_bench_yaml, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--preset", str(tiny_bench_yaml), "--methods", "GA", "--optimizers", "dual", "--seeds", "0,1",
            "--factors", "0.1,1,3,10", "--extend", "0", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "sweep.json").read_text())
    points = summary["grid"]["GA"]["dual"]
    assert [p["forget_lr"] for p in points] == pytest.approx([1e-4, 1e-3, 3e-3, 1e-2])
    # x0.1 barely moves FA and MIA from the original's (within seed noise): its Gap is below the
    # do-nothing row's, and it is still never the selected rate
    slow = points[0]
    assert slow["did_not_unlearn"] is True and slow["Gap"] < summary["do_nothing"]["Gap"]
    assert [p["did_not_unlearn"] for p in points[1:]] == [False, False, False]
    best = min(points[1:], key=lambda p: p["Gap"])
    assert best["Gap"] < summary["do_nothing"]["Gap"] and best["forget_lr"] == pytest.approx(1e-3)
    assert summary["best_forget_lr"]["GA"]["dual"] == pytest.approx(best["forget_lr"])
    assert best["criterion_std"] == pytest.approx(best["seed_gap_std"]) and summary["refused"] == []
    table = (out / "sweep.md").read_text()
    assert "0.0001: 2.09 ± 0.19 (did not unlearn)" in table and f"| {summary['do_nothing']['Gap']:.2f} |" in table
    from dualoptim.config import load_config
    from dualoptim.vision.benchmark import resolve_settings
    from dualoptim.vision.config import VisionConfig

    tuned = load_config(VisionConfig, "vision", [str(tiny_bench_yaml), str(out / "best.yaml")])
    assert resolve_settings(tuned, "GA", "dual").forget_lr == pytest.approx(best["forget_lr"])
    assert f"# GA/dual: forget_lr 0.001, Gap {best['Gap']:.2f} ± {best['criterion_std']:.2f}\n" in (
        out / "best.yaml").read_text()
    assert (out / "factor-0.1" / "results.json").is_file() and (out / "factor-10" / "results.json").is_file()
    # without the good rate the control wins: no rate is written, and best.yaml says why (runs reused)
    assert main([*args[:10], "0.1,10", *args[11:]]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["best_forget_lr"] == {}
    (refusal,) = summary["refused"]
    assert refusal["reason"].startswith("the do-nothing control scores Gap 2.42, at least as good as the best run's")
    header = (out / "best.yaml").read_text()
    assert "# GA/dual: no forget_lr selected: the do-nothing control scores Gap 2.42" in header
    assert "# GA/dual: the best forget_lr 0.01 sits at the upper edge of the grid (grid extension off" in header


def test_sweep_needs_a_method_with_a_forget_loss(tiny_bench_yaml, tmp_path, capsys):
    args = ["sweep", "--preset", str(tiny_bench_yaml), "--methods", "FT", "--out", str(tmp_path / "s"), "--no-progress"]
    assert main(args) == 2
    assert "none of the methods ['FT'] has a forget loss" in capsys.readouterr().err
    assert main([*args[:-3], "--factors", "1,-2", "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    assert "sweep factors must be positive numbers, got [1.0, -2.0]" in capsys.readouterr().err
    args = ["sweep", "--preset", str(tiny_bench_yaml), "--seeds", "0", "--out", str(tmp_path / "s"), "--no-progress"]
    assert main(args) == 2
    assert "a sweep selects on two or more seeds (one cannot tell a difference from seed noise), got seeds [0]" in (
        capsys.readouterr().err)
    assert main([*args[:3], "--factors", "1", "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    assert "a grid of one factor (1) has no step to extend by" in capsys.readouterr().err


def test_committed_results_without_the_control_get_it_from_their_original_block():
    """Results written before the do-nothing row: the same Gap from the original's means, or absent."""
    from pathlib import Path

    from dualoptim.vision.report import markdown_table
    from dualoptim.vision.results import with_controls

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "fashion-mnist" / "results.json"
    committed = json.loads(path.read_text())
    # the committed file was re-run with the control; without it (as written before), the same row
    results = {key: value for key, value in committed.items() if key != "do_nothing"}
    control = with_controls(results)["do_nothing"]
    assert control["Gap"] == pytest.approx(committed["do_nothing"]["Gap"])
    reference = {m: results["retrain"]["metrics"][m]["mean"] for m in METRICS}
    original = results["original"]["metrics"]
    assert control["Gap"] == pytest.approx(sum(abs(original[m]["mean"] - reference[m]) for m in METRICS) / 4)
    assert "do_nothing" not in results  # the input is not modified
    assert "| do nothing (original) | – | 94.50 ± 0.28 (7.60) |" in markdown_table(results)
    del results["original"]
    table = markdown_table(results)
    assert "do nothing (original)" not in table and "The do-nothing row is absent" in table
