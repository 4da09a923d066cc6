"""The sensitivity map: per-seed Gap, grid extension at an edge, the map's files, reuse of finished runs."""

import json

import pytest

from dualoptim.cli import main
from dualoptim.sweep import edge_extension
from dualoptim.vision.sweep import OBJECTIVE, scaled_config, sensitivity_points


def point(factor, gap, failed=0):
    return {"factor": factor, "Gap": gap, "Std": 0.0, "failed": failed}


def edge_extensions(points):
    return edge_extension(points, OBJECTIVE)


def test_the_grid_extends_past_the_end_where_the_lowest_gap_sits():
    assert edge_extensions([point(0.1, 1.0), point(1, 2.0), point(10, 3.0)]) == pytest.approx(0.01)
    assert edge_extensions([point(0.5, 3.0), point(2, 2.0), point(5, 1.0)]) == pytest.approx(12.5)
    assert edge_extensions([point(0.1, 2.0), point(1, 1.0), point(10, 3.0)]) is None
    # A failed run is not a best rate; a grid of one rate has no step to repeat.
    assert edge_extensions([point(0.1, 0.5, failed=1), point(1, 1.0), point(10, 3.0)]) is None
    assert edge_extensions([point(1, 1.0)]) is None


def test_sensitivity_points_hold_the_per_seed_gap():
    reference = {m: {"mean": 50.0} for m in ("FA", "RA", "TA", "MIA")}
    row = {
        "method": "GA", "strategy": "dual", "Gap": 1.5, "Std": 0.5, "failed": [],
        "per_seed": [{"FA": 52, "RA": 50, "TA": 50, "MIA": 50}, {"FA": 50, "RA": 46, "TA": 50, "MIA": 50}],
    }  # fmt: skip
    got = sensitivity_points({"retrain": {"metrics": reference}, "rows": [row]}, 2.0)[("GA", "dual")]
    # seed gaps: |52-50|/4 = 0.5 and |46-50|/4 = 1.0; population std 0.25
    assert got["per_seed_gap"] == [0.5, 1.0]
    assert (got["seed_gap_mean"], got["seed_gap_std"]) == pytest.approx((0.75, 0.25))
    assert (got["factor"], got["Gap"], got["Std"]) == (2.0, 1.5, 0.5)


def test_retain_side_scales_the_retain_rate_only():
    from dualoptim.config import load_config
    from dualoptim.vision.benchmark import resolve_settings
    from dualoptim.vision.config import VisionConfig

    config = load_config(VisionConfig, "vision", ["fashion-mnist"])
    scaled = scaled_config(config, 2.0, "retain")
    assert "FT" in scaled.methods  # FT has a retain loss, so a retain rate to tune
    before, after = resolve_settings(config, "SalUn", "dual"), resolve_settings(scaled, "SalUn", "dual")
    assert after.retain_lr == pytest.approx(2 * before.retain_lr) and after.forget_lr == before.forget_lr
    with pytest.raises(ValueError, match="unknown learning-rate side 'both'"):
        scaled_config(config, 2.0, "both")


def test_sweep_extends_its_grid_and_reuses_finished_runs(tiny_bench_yaml, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--preset", str(tiny_bench_yaml), "--methods", "GA", "--strategies", "dual", "--seeds", "0,1",
            "--factors", "0.3,3", "--extend", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "sweep.json").read_text())
    points = summary["grid"]["GA"]["dual"]
    # Two rates: the lowest Gap is at one end, so one more rate past it was run.
    (extension,) = summary["extended"]
    lowest = min((p for p in points if p["factor"] in (0.3, 3)), key=lambda p: p["Gap"])
    assert extension["factor"] == pytest.approx(0.03 if lowest["factor"] == 0.3 else 30.0)
    assert extension["pairs"] == {"GA": ["dual"]}
    assert [p["factor"] for p in points] == sorted(p["factor"] for p in points) and len(points) == 3
    for p in points:
        assert len(p["per_seed_gap"]) == 2 and p["forget_lr"] > 0
    for name in ("sensitivity.png", "sensitivity-GA.png", "best.yaml"):
        assert (out / name).stat().st_size > 0
    # A second sweep reads every finished run from the run store.
    records = sorted(out.glob("factor-*/runs/GA__dual__seed*.json"))
    stamps = [r.stat().st_mtime_ns for r in records]
    assert len(records) == 6 and main(args) == 0
    assert [r.stat().st_mtime_ns for r in records] == stamps
    assert json.loads((out / "sweep.json").read_text())["grid"] == summary["grid"]
