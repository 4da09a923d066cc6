"""The run store, provenance and the results envelope shared by every task."""

import json

import pytest

from dualoptim.runs import ENVELOPE_KEYS, RunStore, envelope, environment, slug, stable_hash


def test_a_record_is_reused_only_with_its_key(tmp_path):
    store = RunStore(tmp_path / "runs")
    calls = []

    def run():
        calls.append(1)
        return {"metrics": {"FA": 1.0}}

    record, computed = store.get_or_run("task1/a__dual", "k1", run)
    assert computed and record == {"metrics": {"FA": 1.0}, "key": "k1"}
    assert json.loads((tmp_path / "runs" / "task1" / "a__dual.json").read_text()) == record
    assert store.get_or_run("task1/a__dual", "k1", run) == (record, False) and len(calls) == 1
    assert store.get("task1/a__dual", "k2") is None


def test_a_record_of_other_settings_is_kept_aside_not_lost(tmp_path):
    store = RunStore(tmp_path)
    store.put("run", "old", {"value": 1})
    store.put("run", "new", {"value": 2})
    assert store.get("run", "new") == {"value": 2, "key": "new"}
    assert json.loads((tmp_path / "superseded" / "run-old.json").read_text()) == {"value": 1, "key": "old"}
    store.put("run", "new", {"value": 3})  # the same key: rewritten in place, nothing superseded
    assert sorted(p.name for p in (tmp_path / "superseded").iterdir()) == ["run-old.json"]


def test_records_carry_the_provenance_of_the_code_that_made_them(tmp_path):
    from dualoptim.runs import open_output

    env = environment(["dualoptim", "bench"])
    store = open_output(tmp_path, {"seeds": [0]}, env)
    record = store.put("run", "k", {"v": 1})
    assert record["provenance"] == {k: env[k] for k in ("commit", "uncommitted_changes", "torch_threads", "cpu")}
    assert (tmp_path / "config.yaml").read_text() == "seeds:\n- 0\n"
    assert "scikit-learn" in env["versions"] and "numpy" in env["versions"]  # installed, recorded even if not imported


def test_a_corrupt_record_is_recomputed(tmp_path):
    store = RunStore(tmp_path)
    store.path("x").write_text("{not json")
    record, computed = store.get_or_run("x", "k", lambda: {"v": 1})
    assert computed and record["v"] == 1
    assert (tmp_path / "superseded" / "x-corrupt.json").read_text() == "{not json"


def test_keys_are_stable_and_sensitive():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 1.5})
    assert len(stable_hash("x")) == 16
    assert slug("NegGrad+") == "NegGradplus" and slug("dual+-8bit") == "dualplus-8bit"


def test_environment_and_envelope():
    env = environment(["dualoptim", "bench", "--seeds", "0"])
    assert env["command"] == "dualoptim bench --seeds 0"
    assert env["versions"]["torch"] and env["torch_threads"] >= 1 and env["cpu_count"] >= 1
    results = envelope("vision", {"seeds": [0]}, env, [{"method": "GA"}], 1.5, dataset="digits")
    assert tuple(results)[: len(ENVELOPE_KEYS)] == ENVELOPE_KEYS
    assert results["command"] == env["command"] and results["dataset"] == "digits"
    with pytest.raises(ValueError, match=r"clash with the envelope: \['command'\]"):
        envelope("vision", {}, env, [], 0.0, command="x")
