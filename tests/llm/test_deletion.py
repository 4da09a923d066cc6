"""`dualoptim unlearn` on a tiny Llama saved with save_pretrained: end to end (CLI), resume, formats, bad rows."""

import dataclasses
import json

import pytest
import torch

from dualoptim.audit import sha256_path
from dualoptim.cli import main
from dualoptim.llm.deletion import ConversationFormat, LLMRequest, read_rows, unlearn_llm
from tests.llm._tofu_fixture import _author_rows


def _quiet(*_):
    pass


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def lm(tokenizer, tmp_path_factory):
    """A tiny Llama fine-tuned on 12 rows (forget 4, retain 8) and saved; 4 held-out rows it never saw."""
    from dualoptim.llm.data import QAFormat
    from dualoptim.llm.models import TinyModelConfig, build_tiny_llama, finetune

    root = tmp_path_factory.mktemp("lm")
    rows = [r for a in range(8) for r in _author_rows(a)]
    forget, retain, heldout = rows[:4], rows[4:12], rows[12:]
    config = TinyModelConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                             max_position_embeddings=128, epochs=30, batch_size=6, lr=3e-3, warmup_steps=2)  # fmt: skip
    model = build_tiny_llama(config, tokenizer, seed=0)
    finetune(model, tokenizer, forget + retain, QAFormat(), config, 96, progress=False)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    files = {name: _jsonl(root / f"{name}.jsonl", r) for name, r in (("forget", forget), ("retain", retain), ("heldout", heldout))}
    return root / "model", files


def _args(lm, out, *extra):
    model, files = lm
    return ["unlearn", "--model", str(model), "--forget", str(files["forget"]), "--retain", str(files["retain"]),
            "--out", str(out), "--no-progress", *extra]  # fmt: skip


def test_unlearn_a_causal_lm_through_the_cli(lm, tmp_path, capsys):
    model, files = lm
    before = sha256_path(model)
    argv = _args(lm, tmp_path / "o", "--heldout", str(files["heldout"]), "--forget-lr", "3e-3", "--lr", "1e-3",
                 "--batch-size", "2", "--epochs", "1", "--bootstrap", "100", "--set", "max_new_tokens=8", "--device", "cpu")  # fmt: skip
    assert main(argv) == 0
    assert sha256_path(model) == before  # the input folder is never modified
    audit = json.loads((tmp_path / "o" / "audit.json").read_text())
    request = audit["request"]
    assert request["task"] == "causal language model" and request["method"] == "NPO+GD"
    assert request["counts"] == {"forget": 4, "retain": 8, "heldout": 4, "scored": {"forget": 4, "retain": 8, "heldout": 4}}
    assert request["steps"] == 1 * 2 * 6 and request["settings"]["prompt_format"] == "TOFU tags"
    assert set(audit["evidence"]["before"]["mia"]) == {"loss", "min_k"}
    assert audit["evidence"]["before"]["mia"]["loss"]["auc"] > 0.8  # the fine-tuned model knows its rows
    forget = audit["performance"]["forget"]
    assert {"probability", "rouge", "fact_probability", "fact_match"} <= set(forget["before"])
    assert forget["after"]["probability"] < forget["before"]["probability"]  # NPO lowered the forget answers
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "o" / "model")
    assert request["model"]["output_sha256"] == sha256_path(tmp_path / "o" / "model") and reloaded.config.vocab_size
    assert not (tmp_path / "o" / ".checkpoints").exists()
    # 4 forget and 4 held-out rows: too few for any verdict, said so
    assert audit["outcome"] == "INCONCLUSIVE" and "at least 10" in capsys.readouterr().out


def test_an_interrupted_request_resumes_from_the_trainer_checkpoint(lm, tmp_path, monkeypatch):
    from dualoptim.llm.trainer import UnlearningTrainer

    model, files = lm
    request = LLMRequest(model=str(model), forget=str(files["forget"]), retain=str(files["retain"]), steps=8,
                         checkpoint_every=4, batch_size=2, forget_lr=3e-3, lr=1e-3, max_new_tokens=4, bootstrap=20,
                         device="cpu")  # fmt: skip
    save = UnlearningTrainer._save_checkpoint

    def interrupt(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(UnlearningTrainer, "_save_checkpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        unlearn_llm(request, tmp_path / "cut", progress_bar=False)
    assert (tmp_path / "cut" / ".checkpoints" / "checkpoint-4").is_dir() and not (tmp_path / "cut" / "audit.json").exists()
    assert len(list((tmp_path / "cut" / ".checkpoints").glob("before-*.json"))) == 1
    monkeypatch.setattr(UnlearningTrainer, "_save_checkpoint", save)
    audit = unlearn_llm(request, tmp_path / "cut", progress_bar=False)
    assert audit["request"]["settings"]["resumed"] is True
    assert audit["request"]["settings"]["before_cached"] is True  # "before" was not scored again
    assert audit["request"]["settings"]["steps_this_call"] == {"forget": 1, "retain": 3, "joint": 0}  # steps 4-7 only
    whole = unlearn_llm(request, tmp_path / "whole", progress_bar=False)
    assert whole["request"]["settings"]["resumed"] is False and whole["request"]["settings"]["before_cached"] is False
    assert audit["performance"]["forget"]["before"] == whole["performance"]["forget"]["before"]
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "cut" / "model" / "model.safetensors"), load_file(tmp_path / "whole" / "model" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_messages_rows_and_the_chat_template(tmp_path, tokenizer):
    path = _jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "Who?"},
                                                         {"role": "assistant", "content": "Me."}]}])  # fmt: skip
    [row] = read_rows(path, "forget")
    assert row["answer"] == "Me." and [m["role"] for m in row["question"]] == ["system", "user"]
    assert ConversationFormat().prompt(row["question"]) == "Question: Be brief.\nQuestion: Who?\nAnswer:"
    assert ConversationFormat().prompt("Who?") == "Question: Who?\nAnswer:"

    class Chat:
        chat_template = "x"

        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            return "|".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" if add_generation_prompt else "")

    assert ConversationFormat(chat_template=True).prompt(row["question"], Chat()) == "<system>Be brief.|<user>Who?<assistant>"


@pytest.mark.parametrize(("lines", "message"), [
    (['{"question": "Q?", "answer": "A."}', '{"question": "Q2?"}'],
     "forget.jsonl line 2: a row needs \"question\" and \"answer\" strings, or \"messages\""),
    (['{"question": "Q?", "answer": "A."}', "", "not json"], "forget.jsonl line 3 is not JSON"),
    (['{"messages": [{"role": "user", "content": "Q?"}]}'], "line 1: the last message must be the assistant's answer"),
    (['{"question": "Q?", "answer": "A."}', '{"question": "Q?", "answer": "A."}'], "the forget set repeats a row: lines 1 and 2"),
    (['{"question": "Where was Author4 Surname4 born?", "answer": "Author4 Surname4 was born in Quito."}'],
     "1 retain row(s) are also in the forget set (lines 5)"),
])  # fmt: skip
def test_bad_rows_are_one_line_errors_that_name_the_line(lm, tmp_path, capsys, lines, message):
    (tmp_path / "forget.jsonl").write_text("\n".join(lines) + "\n")
    _, files = lm
    argv = ["unlearn", "--model", str(lm[0]), "--forget", str(tmp_path / "forget.jsonl"), "--retain", str(files["retain"]),
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dualoptim unlearn: error:") and len(err.splitlines()) == 1 and message in err, err


def test_an_empty_retain_set_and_image_flags_are_refused(lm, tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("\n")
    model, files = lm
    assert main(["unlearn", "--model", str(model), "--forget", str(files["forget"]), "--retain", str(tmp_path / "empty.jsonl"),
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert f"the retain set {tmp_path / 'empty.jsonl'} is empty" in capsys.readouterr().err
    assert main(_args(lm, tmp_path / "o", "--forget-class", "x")) == 2
    assert "--forget-class is for image classifiers" in capsys.readouterr().err


def test_only_the_last_checkpoint_is_kept_while_unlearning(lm, tmp_path, monkeypatch):
    from dualoptim.llm.trainer import UnlearningTrainer

    model, files = lm
    save = UnlearningTrainer._save_checkpoint
    kept = []

    def count(self, *args, **kwargs):
        save(self, *args, **kwargs)
        kept.append(sorted(p.name for p in (tmp_path / "o" / ".checkpoints").glob("checkpoint-*")))

    monkeypatch.setattr(UnlearningTrainer, "_save_checkpoint", count)
    request = LLMRequest(model=str(model), forget=str(files["forget"]), retain=str(files["retain"]), steps=6,
                         checkpoint_every=2, batch_size=2, max_new_tokens=2, bootstrap=10, device="cpu")  # fmt: skip
    unlearn_llm(request, tmp_path / "o", progress_bar=False)
    assert kept[-1] == ["checkpoint-6"] and all(len(names) <= 2 for names in kept)  # the newest, and the one it replaces


def test_stop_when_ends_unlearning_once_the_retain_budget_is_spent(lm, tmp_path, capsys):
    model, files = lm
    argv = _args(lm, tmp_path / "o", "--heldout", str(files["heldout"]), "--forget-lr", "3e-3", "--lr", "1e-3",
                 "--batch-size", "2", "--epochs", "1", "--bootstrap", "20", "--set", "max_new_tokens=2", "--device", "cpu",
                 "--stop-when", "retain", "--set", "stop_every=2", "--set", "retain_budget=0.0001")  # fmt: skip
    assert main(argv) == 0
    settings = json.loads((tmp_path / "o" / "audit.json").read_text())["request"]["settings"]
    assert settings["planned_steps"] == 12 and settings["stopped_early"]["step"] == 2
    assert "retain answer probability fell" in settings["stopped_early"]["reason"]
    assert main(_args(lm, tmp_path / "p", "--stop-when", "forget")) == 2
    assert "stop_when forget compares the forget rows with the held-out rows: give --heldout" in capsys.readouterr().err


def test_check_rank_orders_met_by_retain_drop_then_forget_score_then_out_of_budget():
    from dualoptim.llm.deletion import check_rank

    met_small = {"retain_drop": 1.0, "forget_met": True, "forget_gap": 0.1}
    met_large = {"retain_drop": 4.0, "forget_met": True, "forget_gap": 0.9}
    near = {"retain_drop": 0.5, "forget_met": False, "forget_gap": -0.1}
    far = {"retain_drop": 0.0, "forget_met": False, "forget_gap": -2.0}
    spent = {"retain_drop": 5.5, "forget_met": True, "forget_gap": 3.0}
    ranked = sorted([spent, far, met_large, near, met_small], key=lambda c: check_rank(c, 5.0), reverse=True)
    assert ranked == [met_small, met_large, near, far, spent]
    assert check_rank({"retain_drop": 5.0, "forget_met": True, "forget_gap": 0.0}, 5.0)[0] == 2  # the budget itself is within it


def test_stop_when_saves_the_best_checked_step_keeps_the_last_and_never_more_than_two(lm, tmp_path, monkeypatch):
    import dualoptim.llm.deletion as deletion
    from dualoptim.llm.trainer import UnlearningTrainer

    model, files = lm
    request = LLMRequest(model=str(model), forget=str(files["forget"]), retain=str(files["retain"]),
                         heldout=str(files["heldout"]), steps=8, checkpoint_every=2, batch_size=2, forget_lr=3e-3, lr=1e-3,
                         max_new_tokens=2, bootstrap=10, device="cpu", stop_when=["retain"], stop_every=2,
                         retain_budget=1e9)  # fmt: skip
    early = unlearn_llm(dataclasses.replace(request, steps=2, stop_when=[]), tmp_path / "early", progress_bar=False, log=_quiet)
    assert early["request"]["saved_model"]["checkpoint"] == "last" and early["request"]["saved_model"]["step"] == 2
    # check_rank is tested above; here step 2 is made the best so that the best is not the last
    monkeypatch.setattr(deletion, "check_rank", lambda check, budget: (1, -check["step"]))
    on_disk = []
    save = UnlearningTrainer._save_checkpoint

    def count(self, *args, **kwargs):
        save(self, *args, **kwargs)
        folder = tmp_path / "o" / ".checkpoints"
        on_disk.append(sorted(p.name for p in folder.iterdir() if p.name.startswith("checkpoint-") or p.suffix == ".pt"))

    monkeypatch.setattr(UnlearningTrainer, "_save_checkpoint", count)
    audit = unlearn_llm(request, tmp_path / "o", progress_bar=False, log=_quiet)
    saved = audit["request"]["saved_model"]
    assert audit["request"]["steps"] == 8 and saved["checkpoint"] == "best" and saved["step"] == 2
    assert [c["step"] for c in saved["checks"]] == [2, 4, 6, 8] and saved["last"]["step"] == 8
    assert on_disk[-1] == ["best.pt", "checkpoint-8"] and all(len(names) <= 2 for names in on_disk[1:])
    from safetensors.torch import load_file

    best, alone = load_file(tmp_path / "o" / "model" / "model.safetensors"), load_file(tmp_path / "early" / "model" / "model.safetensors")
    last = load_file(tmp_path / "o" / "last-model" / "model.safetensors")
    assert all(torch.allclose(best[k], alone[k], atol=1e-6) for k in best)  # the saved model is step 2's weights
    assert not all(torch.allclose(best[k], last[k], atol=1e-6) for k in best)
    assert "Saved model: the best step, step 2" in (tmp_path / "o" / "audit.md").read_text()
    assert not (tmp_path / "o" / ".checkpoints").exists()


def test_default_schedule_follows_the_model_size_within_its_clip():
    from dualoptim.llm.deletion import DEFAULT_PASSES, RATE_RANGE, RATE_SCALE, default_schedule

    small, large = default_schedule(100_000, 60), default_schedule(2_700_000, 60)
    assert small["forget_lr"] == small["lr"] == pytest.approx(RATE_SCALE / 100_000**0.5, rel=0.05)
    assert large["forget_lr"] == pytest.approx(small["forget_lr"] / (27**0.5), rel=0.05)  # 27x the parameters: 1/sqrt(27)
    assert default_schedule(7_000_000_000, 60)["forget_lr"] == RATE_RANGE[0]  # the papers' 1e-5 for 7 B models
    assert default_schedule(10, 60)["forget_lr"] == RATE_RANGE[1]
    assert small["epochs"] == DEFAULT_PASSES
    with pytest.raises(ValueError, match="default_schedule needs a model and forget rows, got 0 parameters"):
        default_schedule(0, 60)


def test_a_request_without_rates_takes_them_from_the_model_size(lm, tmp_path):
    from dualoptim.llm.deletion import default_schedule

    model, files = lm
    request = LLMRequest(model=str(model), forget=str(files["forget"]), retain=str(files["retain"]), steps=2, batch_size=2,
                         max_new_tokens=2, bootstrap=10, device="cpu")  # fmt: skip
    lines = []
    audit = unlearn_llm(request, tmp_path / "o", progress_bar=False, log=lines.append)
    settings = audit["request"]["settings"]
    rule = default_schedule(settings["parameters"], 4)
    assert settings["from_default_schedule"] == ["epochs", "forget_lr", "lr"]
    assert settings["forget_lr"] == rule["forget_lr"] and audit["request"]["options"]["lr"] == rule["lr"]
    assert audit["request"]["steps"] == 2  # --steps still wins over the passes
    assert any("from the model size" in line for line in lines)
    given = unlearn_llm(dataclasses.replace(request, forget_lr=1e-3), tmp_path / "p", progress_bar=False, log=_quiet)
    assert given["request"]["settings"]["forget_lr"] == 1e-3 and given["request"]["settings"]["from_default_schedule"] == ["epochs", "lr"]


def test_why_the_best_step_is_saved_names_the_rule_that_chose_it():
    from dualoptim.llm.deletion import _why_best

    def check(step, drop, met):
        return {"step": step, "retain_drop": drop, "forget_met": met, "forget_gap": 0.0}

    assert _why_best(check(116, 16.8, False), check(124, 18.5, True), 5.0).startswith(
        "every checked step spent more than the retain budget (5 points); step 116 the least (16.80, the last 18.50)")
    assert _why_best(check(4, 1.0, False), check(8, 6.0, True), 5.0).startswith("the last step spent more than the retain budget")
    assert _why_best(check(4, 1.0, True), check(8, 2.0, True), 5.0).startswith("both meet the forget criterion; step 4")
    assert _why_best(check(4, 1.0, True), check(8, 0.5, False), 5.0) == "step 4 meets the forget criterion, the last step does not"


def test_a_resumed_stop_when_request_ranks_against_the_checks_before_the_interruption(lm, tmp_path, monkeypatch):
    from dualoptim.llm.trainer import UnlearningTrainer

    model, files = lm
    request = LLMRequest(model=str(model), forget=str(files["forget"]), retain=str(files["retain"]),
                         heldout=str(files["heldout"]), steps=8, checkpoint_every=4, batch_size=2, forget_lr=3e-3, lr=1e-3,
                         max_new_tokens=2, bootstrap=10, device="cpu", stop_when=["retain"], stop_every=2,
                         retain_budget=1e9)  # fmt: skip
    save = UnlearningTrainer._save_checkpoint

    def interrupt(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(UnlearningTrainer, "_save_checkpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        unlearn_llm(request, tmp_path / "cut", progress_bar=False, log=_quiet)
    checks = json.loads((tmp_path / "cut" / ".checkpoints" / "checks.json").read_text())
    assert [c["step"] for c in checks["checks"]] == [2, 4] and (tmp_path / "cut" / ".checkpoints" / "best.pt").is_file()
    monkeypatch.setattr(UnlearningTrainer, "_save_checkpoint", save)
    cut = unlearn_llm(request, tmp_path / "cut", progress_bar=False, log=_quiet)
    whole = unlearn_llm(request, tmp_path / "whole", progress_bar=False, log=_quiet)
    assert cut["request"]["settings"]["resumed"] is True
    assert [c["step"] for c in cut["request"]["saved_model"]["checks"]] == [2, 4, 6, 8]
    assert cut["request"]["saved_model"]["step"] == whole["request"]["saved_model"]["step"]
    for a, b in zip(cut["request"]["saved_model"]["checks"], whole["request"]["saved_model"]["checks"]):
        assert a["step"] == b["step"] and a["retain_drop"] == pytest.approx(b["retain_drop"], abs=1e-4)
