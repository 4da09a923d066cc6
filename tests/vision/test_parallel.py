"""`--jobs N`: worker processes give the serial run's results and reuse the run store."""

import json

from dualoptim.cli import main


def strip_times(results):
    """The rows without wall times (which differ between any two runs)."""
    rows = []
    for row in results["rows"]:
        row = {k: v for k, v in row.items() if k not in ("seconds", "seconds_std", "time_ratio")}
        row["per_seed"] = [{k: v for k, v in s.items() if k != "seconds"} for s in row["per_seed"]]
        rows.append(row)
    return rows


def test_two_workers_equal_the_serial_run_and_resume_from_the_store(tiny_bench_yaml, tmp_path):
    common = ["bench", "--preset", str(tiny_bench_yaml), "--methods", "GA", "--strategies", "alternate,dual",
              "--seeds", "0,1", "--threads", "1", "--no-progress"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "serial")]) == 0
    assert main([*common, "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    serial = json.loads((tmp_path / "serial" / "results.json").read_text())
    parallel = json.loads((tmp_path / "parallel" / "results.json").read_text())
    assert strip_times(parallel) == strip_times(serial)
    assert parallel["retrain"]["per_seed"][0]["FA"] == serial["retrain"]["per_seed"][0]["FA"]
    assert parallel["config"]["jobs"] == 2
    # A lost record is the only run computed again; the others are read from the store.
    records = sorted((tmp_path / "parallel" / "runs").glob("*.json"))
    assert len(records) == 2 + 2 * 2
    (tmp_path / "parallel" / "runs" / "GA__dual__seed1.json").unlink()
    stamps = {r.name: r.stat().st_mtime_ns for r in records if r.name != "GA__dual__seed1.json"}
    assert main([*common, "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    assert {r.name: r.stat().st_mtime_ns for r in records if r.name in stamps} == stamps
    again = json.loads((tmp_path / "parallel" / "results.json").read_text())
    assert strip_times(again) == strip_times(serial)


def test_jobs_must_be_positive(tiny_bench_yaml, tmp_path, capsys):
    assert main(["bench", "--preset", str(tiny_bench_yaml), "--jobs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "jobs must be an integer >= 1, got 0" in capsys.readouterr().err
