"""The fine-tuning stage: a pretrained base model fine-tuned on TOFU into the target and the
retain-only references (cached), the knowledge check, and the bad inputs of a pretrained model."""

from __future__ import annotations

import json
import re
import warnings

import pytest

from dualoptim.cli import main
from dualoptim.llm.benchmark import KnowledgeWarning, knowledge_check


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALOPTIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _argv(tofu_dir, base, out):
    return [
        "tofu", "--preset", "tofu-phi15", "--data", str(tofu_dir), "--losses", "GA+GD", "--strategies", "dual",
        "--set", f"model.name_or_path={base}", "--set", "model.dtype=float32", "--set", "model.finetune.enabled=true",
        "--set", "model.finetune.epochs=1", "--set", "model.finetune.batch_size=8", "--set", "model.finetune.lr=1e-3",
        "--set", "unlearn.bf16=false", "--set", "unlearn.save_steps=0", "--set", "unlearn.gradient_accumulation_steps=1",
        "--set", "unlearn.steps=1", "--set", "unlearn.batch_size=2", "--set", "unlearn.eval_every=1",
        "--set", "unlearn.trajectory_size=2", "--set", "data.max_length=64", "--set", "data.eval_size=4",
        "--set", "data.max_new_tokens=4", "--set", "data.eval_sets=forget",
        "--set", "data.embedder=null", "--set", "data.nli_model=null", "--no-progress", "--out", str(out),
    ]  # fmt: skip


def test_base_model_runs_the_full_protocol(tofu_dir, model, tokenizer, tmp_path, cache):
    """fine-tune (target and retain-only reference, cached), check, unlearn, evaluate."""
    base = tmp_path / "base"
    model.save_pretrained(base)  # an untrained tiny Llama stands in for a hub base model
    tokenizer.save_pretrained(base)
    with pytest.warns(KnowledgeWarning, match="THE TARGET DOES NOT KNOW THE FORGET SET: forget ROUGE"):
        assert main(_argv(tofu_dir, base, tmp_path / "out")) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    target, retain = results["models"]["target"], results["models"]["retain task 1"]
    assert target["cached"] is False and target["rows"] == 16 and len(target["epoch_losses"]) == 1
    assert retain["cached"] is False and retain["rows"] == 12  # all rows but task 1's 4 forget rows
    row = next(r for r in results["rows"] if r["loss"] == "GA+GD")
    assert row["metrics"]["Forget Quality"] is not None  # the fine-tuned retain model is its reference
    check = results["knowledge_checks"]["1"]
    assert check["ok"] is False and "retain model forget ROUGE" in check
    assert any(note.startswith("task 1: THE TARGET DOES NOT KNOW") for note in results["notes"])
    # another output folder, the same cache: nothing is fine-tuned again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnowledgeWarning)
        assert main(_argv(tofu_dir, base, tmp_path / "again")) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())["models"]
    assert again["target"]["cached"] is True and again["retain task 1"]["cached"] is True
    assert again["target"]["path"] == target["path"]


def test_knowledge_check_by_hand():
    knows = {"forget/ROUGE": 0.95, "forget/Probability": 0.9}
    never_saw = {"forget/ROUGE": 0.4, "forget/Probability": 0.2}
    assert knowledge_check(knows, never_saw, 0.2, 2.0)["ok"] is True
    check = knowledge_check({"forget/ROUGE": 0.44, "forget/Probability": 0.3}, never_saw, 0.2, 2.0)
    assert check["ok"] is False
    assert "forget ROUGE 0.440 vs 0.400 for the retain model (needs +0.2)" in check["message"]
    assert "forget Probability 0.3 vs 0.2 for the retain model (needs x2.0)" in check["message"]
    alone = knowledge_check({"forget/ROUGE": 0.3, "forget/Probability": 0.3}, None, 0.2, 2.0)
    assert not alone["ok"] and "needs >= 0.5; no retain model" in alone["message"]


@pytest.mark.parametrize(
    ("setup", "overrides", "message"),
    [
        ("quantized", [], r"declares a quantisation \(quant_method 'gguf'\): .* remove the key 'quantization_config'"),
        ("missing", [], r"model path '.*nowhere' does not exist \(set model.name_or_path to"),
        ("model", ["--set", "data.format.chat_template=true"],
         "data.format.chat_template is true but the tokenizer '.*' has no chat template"),
        ("model", ["--set", "data.format.chat_template=maybe"], "chat_template must be true, false or auto, got 'maybe'"),
    ],
)  # fmt: skip
def test_bad_pretrained_inputs_are_one_line_errors(
    setup, overrides, message, model, tokenizer, tofu_dir, tmp_path, cache, capsys
):
    import re

    base = tmp_path / "nowhere" if setup == "missing" else tmp_path / "base"
    if setup != "missing":
        model.save_pretrained(base)
        tokenizer.save_pretrained(base)
    if setup == "quantized":
        config = json.loads((base / "config.json").read_text())
        config["quantization_config"] = {"quant_method": "gguf"}
        (base / "config.json").write_text(json.dumps(config))
    argv = ["tofu", "--preset", "tofu-phi15", "--data", str(tofu_dir), "--set", f"model.name_or_path={base}",
            *overrides, "--no-progress", "--out", str(tmp_path / "out")]  # fmt: skip
    capsys.readouterr()  # the saving above printed a progress bar
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dualoptim tofu: error: ")
    assert re.search(message, err), err


def test_lora_fine_tuning_merges_the_adapters_into_a_plain_target(tofu_dir, model, tokenizer, tmp_path, cache):
    import torch
    from transformers import AutoModelForCausalLM

    base = tmp_path / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    lora = ["--set", "model.finetune.lora.enabled=true", "--set", "model.finetune.lora.r=2",
            "--set", "model.finetune.lora.target_modules=[q_proj,v_proj]"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnowledgeWarning)
        assert main([*_argv(tofu_dir, base, tmp_path / "lora"), *lora]) == 0
    target = json.loads((tmp_path / "lora" / "results.json").read_text())["models"]["target"]
    layers = model.config.num_hidden_layers
    hidden = model.config.hidden_size
    # A (r x d_in) and B (d_out x r) on q_proj and v_proj of every layer
    kv = model.config.num_key_value_heads * (hidden // model.config.num_attention_heads)
    r = 2
    assert target["trainable_parameters"] == layers * (r * (hidden + hidden) + r * (hidden + kv))
    tuned = AutoModelForCausalLM.from_pretrained(target["path"])
    original = dict(model.named_parameters())
    changed = {name for name, p in tuned.named_parameters() if not torch.equal(p, original[name])}
    # a plain model with the base's names; only the adapted projections moved
    assert set(dict(tuned.named_parameters())) == set(original)
    assert changed and all(".q_proj." in name or ".v_proj." in name for name in changed)
    # full fine-tuning is another cache entry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnowledgeWarning)
        assert main(_argv(tofu_dir, base, tmp_path / "full")) == 0
    full = json.loads((tmp_path / "full" / "results.json").read_text())["models"]["target"]
    assert full["path"] != target["path"] and full["cached"] is False


# -- model.finetune.subset -----------------------------------------------------------------------------


def _rows(n):
    return [{"question": f"question {i}?", "answer": f"answer {i}."} for i in range(n)]


def test_finetune_subset_keeps_every_forget_row_and_has_the_asked_size():
    from dualoptim.llm.models import finetune_subset

    rows = _rows(40)
    forget = [rows[i] for i in (3, 17, 18, 30, 39)]
    subset = finetune_subset(rows, forget, 12, seed=0)
    assert len(subset) == 12 and all(row in subset for row in forget)
    assert subset == sorted(subset, key=rows.index)  # the rows' own order
    assert finetune_subset(rows, forget, 12, seed=0) == subset  # the same seed, the same subset
    assert finetune_subset(rows, forget, 12, seed=1) != subset  # 7 of 35 retain rows: another seed, others
    # a larger budget only adds retain rows; the forget rows alone and every row are the two ends
    assert set(map(str, subset)) < set(map(str, finetune_subset(rows, forget, 20, seed=0)))
    assert finetune_subset(rows, forget, 5, seed=0) == forget
    assert finetune_subset(rows, forget, 40, seed=0) == rows


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (0, "model.finetune.subset must be a number of rows >= 1 or null (all rows), got 0"),
        (-3, "got -3"),
        (2.5, "got 2.5"),
        (True, "got True"),
        ("10", "got '10'"),
        (4, "model.finetune.subset 4 is smaller than the 5 forget rows of the tasks run, which it always keeps; "
            "expected at least 5"),
        (41, "model.finetune.subset 41 is more than the 40 training rows; expected at most 40"),
    ],
)  # fmt: skip
def test_bad_finetune_subsets_are_one_line_errors(size, message):
    from dualoptim.llm.models import finetune_subset

    rows = _rows(40)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        finetune_subset(rows, rows[:5], size)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.finetune.enabled=true", "model.finetune.subset=0"],
         "model.finetune.subset must be a number of rows >= 1 or null (all rows), got 0"),
        (["model.finetune.enabled=true", "model.finetune.subset=2.5"],
         "config key 'model.finetune.subset' must be int or null, got 2.5"),
        (["model.finetune.subset=10"],
         "model.finetune.subset 10 needs model.kind pretrained and model.finetune.enabled: true"),
        (["model.finetune.enabled=true", "model.finetune.subset=3"],
         "model.finetune.subset 3 is smaller than the 4 forget rows of the tasks run"),
        (["model.finetune.enabled=true", "model.finetune.subset=17"],
         "model.finetune.subset 17 is more than the 16 training rows; expected at most 16"),
    ],
)  # fmt: skip
def test_bad_finetune_subsets_through_the_cli(overrides, message, model, tokenizer, tofu_dir, tmp_path, cache, capsys):
    base = tmp_path / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    sets = [part for o in overrides for part in ("--set", o)]
    argv = ["tofu", "--preset", "tofu-phi15", "--data", str(tofu_dir), "--set", f"model.name_or_path={base}",
            "--set", "model.dtype=float32", *sets, "--no-progress", "--out", str(tmp_path / "out")]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dualoptim tofu: error: ")
    assert message in err, err
    assert not (tmp_path / "out" / "results.json").exists()


def test_subset_fine_tunes_the_target_and_the_retain_model_on_the_same_retain_rows(
    tofu_dir, model, tokenizer, tmp_path, cache, monkeypatch
):
    from dualoptim.llm import models
    from dualoptim.llm.data import TofuSource, all_rows, load_split

    trained = {}
    real = models.finetuned_model

    def spy(kind, base, rows, *args, **kwargs):
        trained[kind] = list(rows)
        return real(kind, base, rows, *args, **kwargs)

    monkeypatch.setattr(models, "finetuned_model", spy)
    base = tmp_path / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    argv = [*_argv(tofu_dir, base, tmp_path / "subset"), "--set", "model.finetune.subset=10"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnowledgeWarning)
        assert main(argv) == 0
    forget = load_split(TofuSource(tofu_dir), "forget10", "1").forget
    target, retain = trained["target"], trained["retain-forget10-task1"]
    assert len(target) == 10 and all(row in target for row in forget)  # 4 forget rows + 6 retain rows
    assert retain == [row for row in target if row not in forget]  # the subset minus the forget rows
    everything = all_rows(TofuSource(tofu_dir))
    assert target == [row for row in everything if row in target]  # rows of the data, in their order
    results = json.loads((tmp_path / "subset" / "results.json").read_text())
    logs = results["models"]
    assert (logs["target"]["rows"], logs["retain task 1"]["rows"]) == (10, 6)
    # every row as a subset trains on the same rows as no subset, yet is its own cache entry (the size is in the
    # key); no subset keeps the key it had before the option
    trained.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnowledgeWarning)
        assert main([*_argv(tofu_dir, base, tmp_path / "all"), "--set", "model.finetune.subset=16"]) == 0
        assert main(_argv(tofu_dir, base, tmp_path / "none")) == 0
    every = json.loads((tmp_path / "all" / "results.json").read_text())["models"]["target"]
    none = json.loads((tmp_path / "none" / "results.json").read_text())["models"]["target"]
    assert every["rows"] == none["rows"] == 16 and every["path"] != none["path"] and none["cached"] is False
    # the run and reference keys change with a subset, and only then
    reference = json.loads((tmp_path / "subset" / "runs" / "task1" / "reference.json").read_text())
    again = json.loads((tmp_path / "none" / "runs" / "task1" / "reference.json").read_text())
    assert reference["key"] != again["key"]


def test_a_subset_of_the_forget_rows_alone_has_no_retain_model(tofu_dir, model, tokenizer, tmp_path, cache):
    base = tmp_path / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnowledgeWarning)
        assert main([*_argv(tofu_dir, base, tmp_path / "out"), "--set", "model.finetune.subset=4"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["models"]["target"]["rows"] == 4  # task 1's 4 forget rows and nothing else
    reference = json.loads((tmp_path / "out" / "runs" / "task1" / "reference.json").read_text())
    assert reference["retain_reason"] == (
        "no retain model for task 1: model.finetune.subset 4 holds no row but the task's forget rows"
    )
    row = next(r for r in results["rows"] if r["loss"] == "GA+GD")
    assert row["metrics"]["Forget Quality"] is None


def test_a_subset_enters_the_run_keys_with_the_tasks_whose_forget_rows_it_keeps(tmp_path):
    from dualoptim.config import load_config
    from dualoptim.llm.benchmark import TofuBenchmark
    from dualoptim.llm.config import TofuConfig

    def keys(*overrides):
        config = load_config(TofuConfig, "tofu", [], ["strategies=[dual]", "losses=[GA+GD]", *overrides])
        benchmark = TofuBenchmark.__new__(TofuBenchmark)  # plan() and reference_key() read the config alone
        benchmark.config = config
        return benchmark.reference_key("1"), benchmark.plan("1")[0].key

    finetune = ["model.kind=pretrained", f"model.name_or_path={tmp_path}", "model.finetune.enabled=true"]
    assert keys(*finetune, "tasks=[1]") == keys(*finetune, "tasks=[1,2]")  # all rows: the task list is no part
    subset = [*finetune, "model.finetune.subset=500"]
    assert keys(*subset, "tasks=[1]") != keys(*finetune, "tasks=[1]")
    # task 1's target also keeps task 2's forget rows when both run: another target, other records
    one, both = keys(*subset, "tasks=[1]"), keys(*subset, "tasks=[1,2]")
    assert one[0] != both[0] and one[1] != both[1]
    assert keys(*subset, "tasks=[2,1]") == both
