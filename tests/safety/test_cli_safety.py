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
    base = ["safety", "--data", str(env), "--methods", "IDK+GD", "--strategies", "dual", "--seeds", "0", "--out", str(out),
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
    assert tiny.strategies == ["joint", "alternate", "dual", "dual+"] and tiny.seeds == [0, 1, 2]
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
