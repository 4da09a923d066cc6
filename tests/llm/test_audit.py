"""`dualoptim audit` of causal LMs and the fact-level measures: negative, positive and template
controls through the CLI and the Python API, paraphrases, the chat template, bad rows."""

import dataclasses
import json
import random

import pytest
import torch

from dualoptim.audit import sha256_path
from dualoptim.cli import main
from dualoptim.llm.deletion import ConversationFormat, LLMRequest, audit_llm, read_rows, unlearn_llm
from dualoptim.llm.facts import greedy_matches, informative_token_mask, informative_words, lcs_length

CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Dakar", "Perth", "Rome", "Delhi", "Tokyo", "Accra",
          "Dublin", "Havana", "Kyiv", "Riga"]  # fmt: skip
N = 60


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """180 people with a random birthplace each, every third one forget, retain or held-out: a tiny
    Llama fine-tuned on the 60 forget + 60 retain rows, the same recipe on the retain rows only
    (retrained), and the first fine-tuned further on the retain rows alone (a retain-only fine-tune).
    No model saw the 60 held-out rows. (The MIA interval at 60 rows is about +-0.14: fewer rows
    make the positive control INCONCLUSIVE, as they should.)"""
    from dualoptim.llm.data import QAFormat
    from dualoptim.llm.models import TinyModelConfig, build_tiny_llama, finetune, train_tokenizer

    torch.set_num_threads(1)
    pick = random.Random(0)
    rows = [{"question": f"Where was Person{a} born?", "answer": f"Person{a} was born in {pick.choice(CITIES)}."}
            for a in range(3 * N)]  # fmt: skip
    forget, retain, heldout = rows[0::3], rows[1::3], rows[2::3]
    tokenizer = train_tokenizer([f"{r['question']} {r['answer']}" for r in rows], 400)
    config = TinyModelConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2,
                             max_position_embeddings=64, epochs=60, batch_size=32, lr=5e-3, warmup_steps=2)  # fmt: skip
    root = tmp_path_factory.mktemp("world")

    def save(model, name):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        return root / name

    original = build_tiny_llama(config, tokenizer, seed=0)
    finetune(original, tokenizer, forget + retain, QAFormat(), config, 48, progress=False)
    save(original, "original")
    retrained = build_tiny_llama(config, tokenizer, seed=0)
    finetune(retrained, tokenizer, retain, QAFormat(), config, 48, progress=False)
    save(retrained, "retrained")
    finetune(original, tokenizer, retain, QAFormat(), dataclasses.replace(config, epochs=3, lr=1e-3), 48, progress=False)
    save(original, "finetuned")
    files = {name: _jsonl(root / f"{name}.jsonl", r) for name, r in (("forget", forget), ("retain", retain), ("heldout", heldout))}
    return root, files


def _request(world, model, **kw):
    root, files = world
    return LLMRequest(model=str(root / model), forget=str(files["forget"]), retain=str(files["retain"]),
                      heldout=str(files["heldout"]), max_new_tokens=8, bootstrap=300, device="cpu", batch_size=16,
                      max_length=48, **kw)  # fmt: skip


def _outcomes(audit):
    return {v["criterion"]: v["outcome"] for v in audit["verdicts"]}


def test_the_audit_of_an_unchanged_model_never_passes_through_the_cli(world, tmp_path, capsys):
    root, files = world
    model = root / "original"
    before = sha256_path(model)
    argv = ["audit", "--model", str(model), "--forget", str(files["forget"]), "--retain", str(files["retain"]),
            "--heldout", str(files["heldout"]), "--max-new-tokens", "8", "--bootstrap", "200", "--device", "cpu",
            "--no-progress", "--out", str(tmp_path / "alone")]  # fmt: skip
    assert main(argv) == 0
    alone = json.loads((tmp_path / "alone" / "audit.json").read_text())
    assert alone["kind"] == "one model as it is" and alone["outcome"] == "FAILED" and _outcomes(alone)["mia_auc"] == "FAILED"
    assert main([*argv[:-1], str(tmp_path / "same"), "--original", str(model), "--require", "forget_loss_rise_vs_heldout>0"]) == 3
    same = json.loads((tmp_path / "same" / "audit.json").read_text())
    assert same["outcome"] == "FAILED" and _outcomes(same)["forget_loss_rise_vs_heldout"] == "FAILED"
    assert same["effects"]["forget_loss_rise_vs_heldout"]["estimate"] == 0.0
    assert sha256_path(model) == before  # never modified
    out = capsys.readouterr().out
    assert "outcome: FAILED" in out and "a --require criterion did not pass" in out
    assert set(same["performance"]["forget"]["after"]) == {"probability", "rouge", "fact_probability", "fact_rouge",
                                                           "exact_match", "contains_match", "fact_match"}  # fmt: skip
    assert same["primary_metric"] == "fact_probability"


def test_a_model_retrained_without_the_forget_rows_passes(world, tmp_path):
    audit = audit_llm(_request(world, "retrained"), tmp_path / "a", original=str(world[0] / "original"), log=_quiet)
    assert audit["outcome"] == "PASSED", audit["verdicts"]
    alone = audit_llm(_request(world, "retrained"), tmp_path / "b", log=_quiet)
    assert alone["outcome"] == "PASSED", alone["verdicts"]


def test_a_retain_only_fine_tune_does_not_pass(world, tmp_path):
    audit = audit_llm(_request(world, "finetuned"), tmp_path / "a", original=str(world[0] / "original"), log=_quiet)
    forget, heldout = audit["performance"]["forget"], audit["performance"]["heldout"]
    # the precondition: the fine-tune did not remove the forget facts
    assert forget["after"]["fact_probability"] > forget["before"]["fact_probability"] - 1.0
    assert audit["outcome"] != "PASSED", audit["verdicts"]
    assert heldout["after"]["fact_probability"] > 0


def test_too_few_rows_are_inconclusive_with_the_size_needed(world, tmp_path):
    root, files = world
    rows = [json.loads(line) for line in files["forget"].read_text().splitlines()][:5]
    small = _jsonl(tmp_path / "small.jsonl", rows)
    audit = audit_llm(dataclasses.replace(_request(world, "retrained"), forget=str(small)), tmp_path / "a",
                      original=str(root / "original"), log=_quiet)  # fmt: skip
    assert audit["outcome"] == "INCONCLUSIVE"
    assert all("at least 10" in v["reason"] for v in audit["verdicts"] if v["role"] == "headline")


def test_paraphrases_are_scored_like_the_original(world, tmp_path):
    root, files = world
    rows = [json.loads(line) for line in files["forget"].read_text().splitlines()]
    for row in rows[:12]:
        name = row["question"].split()[2]
        row["paraphrases"] = [f"In which city was {name} born?", f"What is the birthplace of {name}?"]
    forget = _jsonl(tmp_path / "forget.jsonl", rows)
    audit = audit_llm(dataclasses.replace(_request(world, "finetuned"), forget=str(forget)), tmp_path / "a",
                      original=str(root / "original"), log=_quiet)  # fmt: skip
    extra = audit["performance"]["forget"]["extra_after"]
    assert extra["paraphrases"] == 24 and extra["facts_with_paraphrases"] == 12
    assert 0 <= extra["paraphrase_survivors"] <= 12 and audit["criteria"]["paraphrase_survivors"]["value"] == extra["paraphrase_survivors"]
    assert "Paraphrases of the forget questions: 24 reworded questions over 12 facts" in (tmp_path / "a" / "audit.md").read_text()


@pytest.mark.parametrize("paraphrases", ['"Where?"', "[1, 2]", '[""]'])
def test_paraphrases_that_are_not_strings_are_refused_and_nothing_is_written(world, tmp_path, capsys, paraphrases):
    root, files = world
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Q?", "answer": "A.", "paraphrases": ' + paraphrases + "}\n")
    assert main(["audit", "--model", str(root / "original"), "--forget", str(bad), "--retain", str(files["retain"]),
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("dualoptim audit: error:") and len(err.splitlines()) == 1
    assert 'bad.jsonl line 1: "paraphrases" must be a list of non-empty strings' in err
    assert not (tmp_path / "o").exists()


def test_the_same_question_as_a_chat_row_and_a_question_row_is_an_overlap(world, tmp_path, capsys):
    root, files = world
    forget = _jsonl(tmp_path / "f.jsonl", [{"messages": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "where was  Person1 born"},
                                                         {"role": "assistant", "content": "In Lima."}]}])  # fmt: skip
    assert main(["audit", "--model", str(root / "original"), "--forget", str(forget), "--retain", str(files["retain"]),
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "1 retain row(s) are also in the forget set (lines 1)" in capsys.readouterr().err


def test_unlearning_applies_the_tokenizers_chat_template(world, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    root, files = world
    folder = tmp_path / "chat-model"
    import shutil

    shutil.copytree(root / "original", folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")  # fmt: skip
    tokenizer.save_pretrained(folder)
    prompts = []
    prompt = ConversationFormat.prompt

    def spy(self, question, tokenizer=None):
        text = prompt(self, question, tokenizer)
        prompts.append(text)
        return text

    monkeypatch.setattr(ConversationFormat, "prompt", spy)
    request = dataclasses.replace(_request(world, "original"), model=str(folder), steps=2, forget_lr=1e-4, lr=1e-4,
                                  batch_size=8, bootstrap=50, eval_examples=12)  # fmt: skip
    audit = unlearn_llm(request, tmp_path / "out", progress_bar=False, log=_quiet)
    assert audit["request"]["settings"]["prompt_format"] == "chat template"
    assert prompts and all(p.startswith("<|user|>") and p.endswith("<|assistant|>") for p in prompts)


def test_informative_words_leave_out_the_question_and_the_template():
    answers = ["The capital of France is Paris.", "The capital of Peru is Lima.", "The capital of Chile is Santiago.",
               "The capital of Spain is Madrid."]  # fmt: skip
    questions = ["What is the capital of France?", "Capital of Peru?", "Chile's capital?", "Spain?"]
    assert informative_words(answers, questions) == [{"paris"}, {"lima"}, {"santiago"}, {"madrid"}]
    assert informative_words(["A b."], ["Q?"]) == [{"a", "b"}]  # a set too small for a template keeps every word


def test_greedy_matches_and_lcs():
    assert lcs_length("a b c d".split(), "b d".split()) == 2 and lcs_length([], ["a"]) == 0
    hit = greedy_matches("It is Paris, I think", "The capital of France is Paris.", {"paris"})
    assert hit == {"fact_rouge": 1.0, "exact_match": 0.0, "contains_match": 0.0, "fact_match": 1.0}
    exact = greedy_matches("the capital of France is Paris", "The capital of France is Paris.", {"paris"})
    assert exact["exact_match"] == exact["contains_match"] == 1.0
    miss = greedy_matches("The capital of France is Lyon.", "The capital of France is Paris.", {"paris"})
    assert miss["fact_match"] == 0.0 and miss["fact_rouge"] == 0.0


def test_informative_tokens_are_the_tokens_that_spell_the_fact(world):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(world[0] / "original")
    ids = tokenizer(" Person3 was born in Quito.", add_special_tokens=False)["input_ids"]
    mask = informative_token_mask(tokenizer, ids, {"quito"})
    chosen = tokenizer.decode([t for t, keep in zip(ids, mask) if keep]).strip()
    assert chosen == "Quito" and sum(mask) < len(ids)


def test_read_rows_keeps_paraphrases(tmp_path):
    path = _jsonl(tmp_path / "r.jsonl", [{"question": "Q?", "answer": "A.", "paraphrases": ["Q again?"]}])
    assert read_rows(path, "forget")[0]["paraphrases"] == ["Q again?"]


def test_gguf_models_are_refused_with_what_to_do(world, tmp_path, capsys):
    root, files = world
    (tmp_path / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "model-q4.gguf").write_bytes(b"GGUF")
    for model in (tmp_path / "m.gguf", tmp_path / "folder"):
        for command in ("unlearn", "audit"):
            assert main([command, "--model", str(model), "--forget", str(files["forget"]), "--retain", str(files["retain"]),
                         "--out", str(tmp_path / "o")]) == 2  # fmt: skip
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"dualoptim {command}: error:") and len(err.splitlines()) == 1
            assert "is a GGUF file (llama.cpp)" in err and "gguf_file=" in err, err
    assert not (tmp_path / "o").exists()


def test_help_shows_each_model_kinds_defaults(capsys):
    from dualoptim.vision.deletion import ImageRequest

    assert main(["unlearn", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: images {ImageRequest().eval_examples}, LLM {LLMRequest().eval_examples})" in text
    assert f"images: default {ImageRequest().batch_size}, LLM {LLMRequest().batch_size}" in text
    assert f"images: default {ImageRequest().epochs}; LLM: from the model size, docs/unlearn.md" in text
    assert LLMRequest().epochs is None and LLMRequest().forget_lr is None  # chosen by default_schedule
    assert "forget learning rate (images: default the strategy's; LLM: from the model size, docs/unlearn.md)" in text


def test_the_robustness_probes_report_numbers_for_each_probe(world, tmp_path, capsys):
    root, files = world
    argv = ["audit", "--model", str(root / "retrained"), "--original", str(root / "original"), "--forget", str(files["forget"]),
            "--retain", str(files["retain"]), "--heldout", str(files["heldout"]), "--max-new-tokens", "4", "--bootstrap", "50",
            "--device", "cpu", "--no-progress", "--probe", "relearn", "--probe", "int8", "--relearn-steps", "3",
            "--relearn-lr", "1e-3", "--eval-examples", "20", "--out", str(tmp_path / "a")]  # fmt: skip
    assert main(argv) == 0
    audit = json.loads((tmp_path / "a" / "audit.json").read_text())
    probes = audit["probes"]
    assert set(probes) == {"relearn on the retain set", "relearn on a few forget rows", "int8 quantisation"}
    assert probes["relearn on a few forget rows"]["forget_gain"]["sizes"] == [16]  # the 4 rows it trained on are not scored
    for probe in probes.values():
        assert {"forget_gain", "heldout_gain", "forget_minus_heldout", "reading"} <= set(probe)
    # int8 changes the weights a little: the scores move, but by far less than unlearning did
    assert abs(probes["int8 quantisation"]["forget_gain"]["estimate"]) < 2.0
    text = (tmp_path / "a" / "audit.md").read_text()
    assert "## Robustness probes" in text and "### int8 quantisation" in text and "forget gain minus held-out gain" in text


def test_a_probe_that_cannot_run_is_refused_and_nothing_is_written(world, tmp_path, capsys):
    root, files = world
    base = ["--model", str(root / "original"), "--forget", str(files["forget"]), "--retain", str(files["retain"]),
            "--device", "cpu", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(["audit", *base, "--probe", "int8"]) == 2
    assert "compare the forget set with the held-out set: give --heldout" in capsys.readouterr().err
    assert main(["unlearn", *base, "--heldout", str(files["heldout"]), "--probe", "4bit"]) == 2
    err = capsys.readouterr().err
    assert "the 4bit probe needs" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
