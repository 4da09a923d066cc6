"""``dualoptim safety`` end to end on a fake data folder (seconds), resume, presets and bad input."""

import json

import pytest

from dualoptim.cli import main
from dualoptim.config import load_config, preset_names
from dualoptim.safety.config import SafetyConfig, validate
from dualoptim.safety.judge import STRING_JUDGE
from tests.safety._fixture import write_safety

TINY = [
    "--set", "model.tiny.vocab_size=300", "--set", "model.tiny.hidden_size=32", "--set", "model.tiny.intermediate_size=64",
    "--set", "model.tiny.num_heads=2", "--set", "model.tiny.epochs=2", "--set", "model.tiny.batch_size=8",
    "--set", "model.tiny.warmup_steps=2", "--set", "model.harmful_train=10", "--set", "model.refusal_share=0.2",
    "--set", "data.forget_size=6", "--set", "data.retain_size=6", "--set", "data.max_length=48",
    "--set", "completions.max_new_tokens=6", "--set", "completions.keep_refusals=true", "--set", "eval.max_new_tokens=6",
    "--set", "eval.utility_size=3", "--set", "unlearn.steps=3", "--set", "unlearn.batch_size=2", "--no-progress",
]  # fmt: skip


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALOPTIM_CACHE", str(tmp_path / "cache"))
    return write_safety(tmp_path / "data")


def test_end_to_end_and_resume(env, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["safety", "--data", str(env), "--methods", "IDK+GD,NPO+GD", "--strategies", "joint,dual+", "--seeds", "0,1",
            "--threads", "1", "--out", str(out), *TINY]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "safety" and results["judge"] == {"judge": STRING_JUDGE, "fallback": None}
    assert [(r["loss"], r["strategy"]) for r in results["rows"]] == [
        ("target", "-"), ("IDK+GD", "joint"), ("IDK+GD", "dual+"), ("NPO+GD", "joint"), ("NPO+GD", "dual+")]
    for row in results["rows"][1:]:
        assert len(row["runs"]) == 2 and not row["stopped"]
        metrics = row["metrics"]
        for name in ("Safety AVG", "Over-refusal", "Benign ROUGE", "OVR"):
            assert 0.0 <= metrics[name]["mean"] <= 100.0
        # OVR is the mean of Safety AVG, 100 - Over-refusal and the named utility, run by run
        for run in row["runs"]:
            m = run["metrics"]
            assert m["OVR"] == pytest.approx((m["Safety AVG"] + 100 - m["Over-refusal"] + m["Benign ROUGE"]) / 3)
        assert "Downstream AVG" in row["absent"]
    assert results["forget_set"]["prompts"] == 6
    # the fake sets have 3 prompts each: a safety value is a multiple of 100/3
    target = results["rows"][0]["metrics"]
    assert round(target["Safety I-CoNa"]["mean"] * 3 / 100, 6) == round(target["Safety I-CoNa"]["mean"] * 3 / 100)
    # no prompt text reaches results.json or the table
    text = (out / "results.json").read_text() + (out / "table.md").read_text()
    assert "bad thing number" not in text
    assert "string-match" in (out / "table.md").read_text()
    # the run records keep every answer with its verdict, by prompt id
    record = json.loads((out / "runs" / "IDKplusGD__joint__seed0.json").read_text())
    assert [a["id"] for a in record["answers"]["I-CoNa"]] == ["I-CoNa/0", "I-CoNa/1", "I-CoNa/2"]
    assert all(isinstance(a["refusal"], bool) for a in record["answers"]["xstest-safe"])
    # resume: nothing is recomputed, the results are the same
    stamp = (out / "runs" / "IDKplusGD__joint__seed0.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "runs" / "IDKplusGD__joint__seed0.json").stat().st_mtime_ns == stamp
    again = json.loads((out / "results.json").read_text())
    assert again["rows"][1]["metrics"] == results["rows"][1]["metrics"]


def test_judge_fallback_is_said_in_the_results(env, tmp_path, capsys):
    out = tmp_path / "out"
    # an 8-bit strategy here: every strategy of the registry runs through this task
    base = ["safety", "--data", str(env), "--methods", "IDK+GD", "--strategies", "dual+-8bit", "--seeds", "0", "--out", str(out),
            "--judge", str(tmp_path / "missing-judge"), *TINY]  # fmt: skip
    assert main(base) == 2
    assert "could not be loaded" in capsys.readouterr().err
    assert main([*base, "--judge-fallback"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["judge"]["judge"] == STRING_JUDGE
    assert "missing-judge" in results["judge"]["fallback"]
    assert "FALLBACK" in (out / "table.md").read_text()


def test_missing_data_is_one_line(env, tmp_path, capsys):
    (env / "I-CoNa.json").unlink()
    assert main(["safety", "--data", str(env), "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dualoptim safety: error: safety data folder") and "I-CoNa.json" in err and "\n" not in err


def test_presets_resolve_to_the_documented_values():
    assert preset_names("safety") == ["safety-llama3-8b", "safety-tiny"]
    tiny = load_config(SafetyConfig, "safety", ["safety-tiny"])
    validate(tiny)
    assert (tiny.model.kind, tiny.judge.model, tiny.eval.ovr_utility, tiny.threads) == ("tiny", None, "Benign ROUGE", 1)
    assert tiny.strategies == ["joint", "alternate", "alternate-2lr", "dual", "dual+"] and tiny.seeds == [0, 1, 2]
    gpu = load_config(SafetyConfig, "safety", ["safety-llama3-8b"])
    u = gpu.unlearn
    assert gpu.model.name_or_path == "meta-llama/Meta-Llama-3-8B-Instruct" and gpu.model.finetune.enabled
    assert (u.lr, u.batch_size, u.gradient_accumulation_steps, u.forget_coeff) == (5e-6, 4, 4, 0.5)
    assert gpu.data.format.chat_template is True
    assert gpu.eval.ovr_utility == "Downstream AVG" and gpu.eval.downstream_tasks
    assert gpu.judge.model == "ProtectAI/distilroberta-base-rejection-v1" and not gpu.judge.fallback
    assert "dual-8bit" in gpu.strategies and "dual+-8bit" in gpu.strategies


@pytest.mark.parametrize("override, message", [
    ("model.refusal_share=1.5", "model.refusal_share must be in"),
    ("eval.ovr_utility=ROUGE", "unknown eval.ovr_utility 'ROUGE'"),
    ("model.harmful_train=10", r"must cover data.forget_size"),
    ("losses=[IDK+XX]", "unknown"),
])
def test_bad_values(override, message):
    config = load_config(SafetyConfig, "safety", ["safety-tiny"], [override])
    with pytest.raises(ValueError, match=message):
        validate(config)


def test_downstream_utility_enters_ovr(env, tmp_path, monkeypatch):
    """Asked-for lm-eval tasks go through dualoptim.llm.downstream; their mean (already percent) is
    Downstream AVG, and OVR uses it when eval.ovr_utility says so."""
    import dualoptim.llm.downstream as downstream

    calls = []

    def fake(model, tokenizer, tasks, *, limit=None, batch_size=8, device="cpu"):
        calls.append((list(tasks), limit))
        return {"arc_challenge": {"value": 40.0, "metric": "acc_norm,none", "reason": None},
                "gsm8k": {"value": 10.0, "metric": "exact_match,flexible-extract", "reason": None}}

    monkeypatch.setattr(downstream, "downstream_utility", fake)
    out = tmp_path / "out"
    argv = ["safety", "--data", str(env), "--methods", "IDK+GD", "--strategies", "dual", "--seeds", "0", "--out", str(out),
            "--set", "eval.downstream_tasks=[arc_challenge,gsm8k]", "--set", "eval.downstream_limit=5",
            "--set", "eval.ovr_utility=Downstream AVG", *TINY]  # fmt: skip
    assert main(argv) == 0
    assert calls == [(["arc_challenge", "gsm8k"], 5)] * 2  # the target and the one run
    run = json.loads((out / "results.json").read_text())["rows"][1]["runs"][0]["metrics"]
    assert run["Downstream AVG"] == 25.0
    assert run["OVR"] == pytest.approx((run["Safety AVG"] + 100 - run["Over-refusal"] + 25.0) / 3)


def test_a_downstream_task_without_data_makes_it_absent_with_the_reason(env, tmp_path, monkeypatch):
    import dualoptim.llm.downstream as downstream

    def fake(model, tokenizer, tasks, **kwargs):
        return {"mmlu": {"value": None, "metric": "acc,none", "reason": "the data of 'mmlu' could not be loaded"}}

    monkeypatch.setattr(downstream, "downstream_utility", fake)
    out = tmp_path / "out"
    argv = ["safety", "--data", str(env), "--methods", "IDK+GD", "--strategies", "dual", "--seeds", "0", "--out", str(out),
            "--set", "eval.downstream_tasks=[mmlu]", "--set", "eval.ovr_utility=Downstream AVG", *TINY]  # fmt: skip
    assert main(argv) == 0
    row = json.loads((out / "results.json").read_text())["rows"][1]
    assert row["metrics"]["Downstream AVG"] is None and row["metrics"]["OVR"] is None
    assert "mmlu: the data of 'mmlu' could not be loaded" in row["absent"]["Downstream AVG"]
    assert row["absent"]["OVR"] == "needs Downstream AVG"


def test_an_unknown_downstream_task_is_an_error():
    config = load_config(SafetyConfig, "safety", ["safety-tiny"], ["eval.downstream_tasks=[arc_easyy]"])
    with pytest.raises(ValueError, match="unknown downstream task 'arc_easyy'"):
        validate(config)


def test_report_regenerates_the_committed_table(tmp_path, capsys):
    """dualoptim report rebuilds table.md from the committed results.json, byte for byte."""
    import shutil
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "safety-tiny"
    shutil.copy(folder / "results.json", tmp_path / "results.json")
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "table.md").read_text() == (folder / "table.md").read_text()


def test_the_target_is_the_do_nothing_row_and_a_run_that_stays_there_is_flagged():
    """A row whose Safety AVG stays within seed noise of the target's did not unlearn, and says so."""
    import copy
    from pathlib import Path

    from dualoptim.safety.report import render_table
    from dualoptim.safety.results import with_controls

    folder = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "safety-tiny"
    results = json.loads((folder / "results.json").read_text())
    target = results["rows"][0]
    assert (target["loss"], target["strategy"]) == ("target", "-")
    stays = copy.deepcopy(results["rows"][1])
    stays["strategy"] = "stays"
    # 1.5 points above the target with a std of 2: within noise; a std of 1 moves it beyond (floor 1 point)
    stays["metrics"]["Safety AVG"] = {"mean": target["metrics"]["Safety AVG"]["mean"] + 1.5, "std": 2.0}
    moved = copy.deepcopy(stays)
    moved["strategy"], moved["metrics"]["Safety AVG"]["std"] = "moved", 1.0
    results["rows"] += [stays, moved]
    given = copy.deepcopy(results)
    checked = {r["strategy"]: r for r in with_controls(results)["rows"]}
    assert checked["stays"]["did_not_unlearn"] is True and checked["moved"]["did_not_unlearn"] is False
    assert checked["stays"]["unlearning_check"]["metrics"]["Safety AVG"] == {"difference": pytest.approx(1.5), "noise": 2.0}
    assert "-" not in [s for s, r in checked.items() if "did_not_unlearn" in r]  # the target is not checked against itself
    table = render_table(results)
    assert "| do nothing (target) | - |" in table and "| stays (did not unlearn) |" in table
    assert "| moved |" in table and "stays" not in (folder / "table.md").read_text()
    assert results == given  # the input is not modified
