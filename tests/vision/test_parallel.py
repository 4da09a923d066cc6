"""`--jobs N`: worker processes and a submitit cluster give the serial run's results and reuse the run store."""

import json

import pytest

from dualoptim.cli import main


def strip_times(results):
    """The rows without wall times (which differ between any two runs)."""
    rows = []
    for row in results["rows"]:
        row = {k: v for k, v in row.items() if k not in ("seconds", "seconds_std", "time_ratio")}
        row["per_seed"] = [{k: v for k, v in s.items() if k != "seconds"} for s in row["per_seed"]]
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def serial(tiny_bench_yaml, tmp_path_factory):
    """The command line of a small benchmark, and its results run serially."""
    common = ["bench", "--preset", str(tiny_bench_yaml), "--methods", "GA", "--strategies", "alternate,dual",
              "--seeds", "0,1", "--threads", "1", "--no-progress"]  # fmt: skip
    out = tmp_path_factory.mktemp("serial")
    assert main([*common, "--out", str(out)]) == 0
    return common, json.loads((out / "results.json").read_text())


def test_two_workers_equal_the_serial_run_and_resume_from_the_store(serial, tmp_path):
    common, expected = serial
    assert main([*common, "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    parallel = json.loads((tmp_path / "parallel" / "results.json").read_text())
    assert strip_times(parallel) == strip_times(expected)
    assert parallel["retrain"]["per_seed"][0]["FA"] == expected["retrain"]["per_seed"][0]["FA"]
    assert parallel["config"]["jobs"] == 2
    # A lost record is the only run computed again; the others are read from the store.
    records = sorted((tmp_path / "parallel" / "runs").glob("*.json"))
    assert len(records) == 2 + 2 * 2
    (tmp_path / "parallel" / "runs" / "GA__dual__seed1.json").unlink()
    stamps = {r.name: r.stat().st_mtime_ns for r in records if r.name != "GA__dual__seed1.json"}
    assert main([*common, "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    assert {r.name: r.stat().st_mtime_ns for r in records if r.name in stamps} == stamps
    again = json.loads((tmp_path / "parallel" / "results.json").read_text())
    assert strip_times(again) == strip_times(expected)


def test_a_two_job_submitit_cluster_equals_the_serial_run(serial, tmp_path):
    pytest.importorskip("submitit")
    common, expected = serial
    cluster = [*common, "--jobs", "2", "--set", "executor=submitit", "--set", "executor_options.cluster=local"]
    assert main([*cluster, "--out", str(tmp_path / "cluster")]) == 0
    parallel = json.loads((tmp_path / "cluster" / "results.json").read_text())
    assert strip_times(parallel) == strip_times(expected)
    # The jobs stored the records themselves, one file per run, and left their logs.
    assert len(list((tmp_path / "cluster" / "runs").glob("*.json"))) == 2 + 2 * 2
    assert list((tmp_path / "cluster" / "submitit").glob("*_log.out"))


def test_bad_parallel_settings_are_named(tiny_bench_yaml, tmp_path, capsys):
    assert main(["bench", "--preset", str(tiny_bench_yaml), "--jobs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "jobs must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["bench", "--preset", str(tiny_bench_yaml), "--set", "executor=ray", "--out", str(tmp_path / "o")]) == 2
    assert "unknown executor 'ray'; valid: processes, submitit" in capsys.readouterr().err
