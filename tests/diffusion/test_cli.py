"""``dualoptim diffusion`` end to end on a tiny digits model: outputs, resume, and one-line errors of bad input."""

import json

import pytest

from dualoptim.cli import main


def _run(tmp_path, tiny_yaml, *extra):
    return main(["diffusion", "--preset", str(tiny_yaml), "--out", str(tmp_path / "out"), "--threads", "1",
                 "--no-progress", *extra])  # fmt: skip


def test_a_tiny_benchmark_writes_the_envelope_table_figure_grids_and_resumes(tmp_path, tiny_yaml, capsys):
    assert _run(tmp_path, tiny_yaml, "--seeds", "0", "1") == 0
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert list(results)[:6] == ["task", "config", "environment", "command", "rows", "seconds"]
    assert results["task"] == "diffusion" and results["distance"] == "FD (classifier features)"
    assert isinstance(results["seconds"], float) and results["run_seconds"] > 0
    assert results["seeds"] == [0, 1]
    rows = {(r["method"], r["strategy"]): r for r in results["rows"]}
    assert set(rows) == {("Original", None), ("SFRon", "alternate"), ("SFRon", "dual"), ("SA", "alternate"), ("SA", "dual")}
    assert results["rows"][0]["control"] and not any(r["control"] for r in results["rows"][1:])
    for row in results["rows"]:
        entry = row["per_class"]["3"]
        assert entry["seeds"] == [0, 1]
        for metric in ("FA", "FD", "kept_accuracy"):
            per_seed = entry[metric]["per_seed"]
            assert set(per_seed) == {"0", "1"}
            assert entry[metric]["mean"] == pytest.approx(sum(per_seed.values()) / 2)
        assert 0.0 <= entry["FA"]["mean"] <= 100.0 and entry["FD"]["mean"] >= 0.0 and entry["FA"]["std"] is not None
        assert isinstance(entry.get("did_not_unlearn", False), bool)
    control = rows[("Original", None)]["per_class"]["3"]
    # the do-nothing row is the original scored on each seed's own noise bank: its seeds differ
    assert control["FD"]["per_seed"]["0"] != control["FD"]["per_seed"]["1"]
    for name, stats in results["original"]["sample_accuracy"].items():
        assert set(stats["per_seed"]) == {"0", "1"}, name
    assert set(results["original"]["sample_accuracy"]) == set("0123456789")
    table = (out / "table.md").read_text()
    assert "FD (classifier features)" in table and "FID" not in table
    assert "## Forgotten class: 3" in table and "| Do nothing (original) | – |" in table
    assert (out / "fa_fd.png").is_file()
    assert len(list((out / "grids").glob("grid_class3_*.png"))) == 8
    assert (out / "runs" / "original" / "seed1.json").is_file()
    record = out / "runs" / "class3" / "SFRon__dual__seed0.json"
    stamp = record.stat().st_mtime_ns
    capsys.readouterr()
    assert _run(tmp_path, tiny_yaml, "--seeds", "0", "1") == 0  # resume: nothing is recomputed
    assert record.stat().st_mtime_ns == stamp
    assert "class3/" not in capsys.readouterr().out
    assert main(["report", str(out)]) == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--classes", "12"], "class 12 is out of range: the data set has classes 0..9"),
    (["--classes", "cat"], "class name 'cat' is not in the data set; valid: 0, 1, 2"),
    (["--set", "eval.distance=fid", "--set", "eval.fid_weights=/nowhere/inception.pth"],
     "FID needs the Inception weights file /nowhere/inception.pth, which is missing; set eval.fid_fallback=true"),
    (["--methods", "ESD"], "unknown method 'ESD'; valid: GA, RL, SA, SalUn, SFRon"),
    (["--strategies", "sgd"], "unknown strategy 'sgd'"),
])  # fmt: skip
def test_bad_input_is_one_line_naming_the_value(tmp_path, tiny_yaml, capsys, extra, message):
    assert _run(tmp_path, tiny_yaml, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dualoptim diffusion: error: ") and message in err and "\n" not in err


def test_a_checkpoint_of_another_class_count_is_a_one_line_error(tmp_path, tiny_yaml, capsys):
    from dualoptim.diffusion.models import save_checkpoint
    from tests.diffusion.conftest import tiny_unet

    save_checkpoint(tmp_path / "five.pt", tiny_unet(num_classes=5), {})
    assert _run(tmp_path, tiny_yaml, "--set", f"model.checkpoint={tmp_path / 'five.pt'}") == 2
    assert "five.pt has 5 classes, the data set has 10" in capsys.readouterr().err


def test_fid_falls_back_to_the_labelled_fd_only_when_asked(tmp_path, tiny_yaml):
    from dualoptim.config import load_config
    from dualoptim.diffusion.benchmark import distance_name
    from dualoptim.diffusion.config import DiffusionConfig

    config = load_config(DiffusionConfig, "diffusion", [str(tiny_yaml)], ["eval.distance=fid", "eval.fid_fallback=true"])
    assert distance_name(config) == "FD (classifier features)"
    (tmp_path / "w.pth").write_bytes(b"x")
    config = load_config(DiffusionConfig, "diffusion", [str(tiny_yaml)], ["eval.distance=fid", f"eval.fid_weights={tmp_path / 'w.pth'}"])
    assert distance_name(config) == "FID"
