"""``dualoptim tofu --dry-run``: the memory estimate from a model config, against hand computation."""

from __future__ import annotations

import math

import pytest

from dualoptim.cli import main
from dualoptim.config import load_config
from dualoptim.llm import memory
from dualoptim.llm.config import TofuConfig
from dualoptim.strategies import STRATEGIES


def _llama_folder(path, **sizes):
    from transformers import LlamaConfig

    LlamaConfig(**sizes).save_pretrained(path)
    return path


def test_estimate_by_hand(tmp_path):
    folder = _llama_folder(tmp_path / "small", vocab_size=1000, hidden_size=64, intermediate_size=128,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                           tie_word_embeddings=False)  # fmt: skip
    config = load_config(TofuConfig, "tofu", ["tofu-llama2-7b"], [
        f"model.name_or_path={folder}", "strategies=joint,dual,dual+,dual+-8bit", "losses=NPO+GD",
        "unlearn.batch_size=3", "data.max_length=100", "unlearn.gradient_checkpointing=false",
    ])  # fmt: skip
    shapes, sizes = memory.model_shapes(config)
    # embeddings + lm head, per layer 4 attention + 3 MLP matrices and 2 norms, the final norm
    per_layer = 4 * 64 * 64 + 3 * 64 * 128 + 2 * 64
    params = 2 * 1000 * 64 + 2 * per_layer + 64
    assert sum(math.prod(s) for s in shapes) == params
    assert sizes == {"hidden": 64, "layers": 2, "vocab": 1000}
    rows = {r.strategy: r for r in memory.estimate(config, shapes, sizes)}
    joint, dual, plus, plus8 = rows["joint"], rows["dual"], rows["dual+"], rows["dual+-8bit"]
    assert dual.weights == 2 * params and dual.gradients == 2 * params  # bfloat16
    assert dual.masters == 4 * params and dual.reference == 2 * params  # NPO needs a frozen copy
    assert (joint.states, dual.states, plus.states) == (8 * params, 16 * params, 24 * params)
    # 8-bit: tensors of >= 4,096 elements take a byte per element and a float32 absmax per 256
    expected = sum(6 * (n + 4 * math.ceil(n / 256)) if n >= 4096 else 24 * n for n in map(math.prod, shapes))
    assert plus8.states == expected
    per_layer_activations = 34 * 100 * 3 * 64 * 2 // 2
    assert dual.activations == 2 * per_layer_activations + 8 * 100 * 3 * 1000
    assert joint.activations == 2 * dual.activations  # forget and retain graphs alive together
    # with checkpointing: each layer's input (bf16) plus one layer's full set, and the logits
    config.unlearn.gradient_checkpointing = True
    (checkpointed,) = [r for r in memory.estimate(config, shapes, sizes) if r.strategy == "dual"]
    assert checkpointed.activations == 2 * 100 * 3 * 64 * 2 + per_layer_activations + 8 * 100 * 3 * 1000
    assert dual.total == sum([dual.weights, dual.masters, dual.reference, dual.gradients, dual.states,
                              dual.activations])  # fmt: skip


def test_sgd_family_keeps_one_momentum_on_the_retain_side():
    config = TofuConfig()
    config.unlearn.family = "sgd"
    config.strategies = ["alternate", "dual", "dual-8bit"]
    shapes, sizes = [(100,)], {"hidden": 10, "layers": 1, "vocab": 10}
    rows = {r.strategy: r.states for r in memory.estimate(config, shapes, sizes)}
    assert rows == {"alternate": 400, "dual": 800 + 400, "dual-8bit": 800 + 400}  # 100 elements: float32


def test_dry_run_of_the_7b_preset_loads_no_weights(tmp_path, capsys):
    folder = _llama_folder(tmp_path / "llama2-7b-config", vocab_size=32000, hidden_size=4096,
                           intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                           num_key_value_heads=32, tie_word_embeddings=False)  # fmt: skip
    assert not list(folder.glob("*.safetensors"))  # a config and nothing else
    argv = ["tofu", "--preset", "tofu-llama2-7b", "--set", f"model.name_or_path={folder}",
            "--strategies", "dual+,dual+-8bit", "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "6,738,415,616 parameters" in printed  # Llama-2-7B's published size
    plus = next(line for line in printed.splitlines() if line.startswith("| dual+ |"))
    # 24 bytes of float32 state per parameter: 150.62 GiB
    assert plus.split(" | ")[5] == f"{24 * 6738415616 / 1024**3:.2f}"


def test_dry_run_of_a_missing_model_is_a_one_line_error(tmp_path, capsys):
    argv = ["tofu", "--preset", "tofu-llama2-7b", "--set", f"model.name_or_path={tmp_path / 'nowhere'}", "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    # caught by the config check, before the model config is read
    assert err.startswith("dualoptim tofu: error: model path") and "nowhere' does not exist" in err


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_registered_strategy_has_a_memory_model(strategy):
    config = TofuConfig()
    config.strategies = [strategy]
    (row,) = memory.estimate(config, [(8192,)], {"hidden": 8, "layers": 1, "vocab": 8})
    assert row.states > 0


def test_lora_estimate_counts_the_adapters_alone(tmp_path):
    folder = _llama_folder(tmp_path / "small", vocab_size=1000, hidden_size=64, intermediate_size=128,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                           tie_word_embeddings=False)  # fmt: skip
    config = load_config(TofuConfig, "tofu", ["tofu-llama2-7b"], [
        f"model.name_or_path={folder}", "strategies=dual,dual+", "losses=ME+GD", "unlearn.lora.enabled=true",
        "unlearn.lora.r=8", "unlearn.lora.target_modules=q_proj,down_proj",
    ])  # fmt: skip
    shapes, sizes = memory.model_shapes(config)
    params = sum(math.prod(s) for s in shapes)
    # per layer: q_proj 64 -> 64 gives 8*64 + 64*8; down_proj 128 -> 64 gives 8*128 + 64*8
    adapters = 2 * ((8 * 64 + 64 * 8) + (8 * 128 + 64 * 8))
    assert sum(sizes["lora_numels"]) == adapters
    rows = {r.strategy: r for r in memory.estimate(config, shapes, sizes)}
    dual, plus = rows["dual"], rows["dual+"]
    assert dual.weights == 2 * params + 4 * adapters  # bf16 base + float32 adapters
    assert dual.gradients == 4 * adapters and dual.masters == 0 and dual.reference == 0
    assert (dual.states, plus.states) == (16 * adapters, 24 * adapters)
    assert "LoRA r=8 on q_proj, down_proj" in memory.render(config, shapes, sizes)


def test_dry_run_estimates_the_fine_tuning_stage(tmp_path, capsys):
    folder = _llama_folder(tmp_path / "llama2-7b-config", vocab_size=32000, hidden_size=4096,
                           intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                           num_key_value_heads=32, tie_word_embeddings=False)  # fmt: skip
    argv = ["tofu", "--preset", "tofu-llama2-7b", "--set", f"model.name_or_path={folder}", "--set", "model.finetune.enabled=true",
            "--set", "model.dtype=bfloat16", "--set", "data.max_length=512", "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "## fine-tuning stage (model.finetune.enabled: 4,000 TOFU rows, 5 epochs, batch 32)" in printed
    p = 6738415616
    row = printed.split("## fine-tuning stage")[1].splitlines()[4].strip("| ").split(" | ")
    # bf16 weights 2P, float32 masters 4P, bf16 gradients 2P, two float32 AdamW moments 8P
    assert [float(c) for c in row[:4]] == pytest.approx([round(x * p / 1024**3, 2) for x in (2, 4, 2, 8)], abs=0.006)
    assert "625 optimizer steps" in printed and "10,240,000 tokens" in printed  # ceil(4000/32) x 5; 4000 x 5 x 512
    assert f"{6 * p * 10240000:.3g} FLOPs" in printed


def test_dry_run_fine_tuning_estimate_scales_with_the_subset(tmp_path, capsys):
    folder = _llama_folder(tmp_path / "small", vocab_size=1000, hidden_size=64, intermediate_size=128,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                           tie_word_embeddings=False)  # fmt: skip
    overrides = [f"model.name_or_path={folder}", "model.finetune.enabled=true", "data.max_length=512"]
    full = load_config(TofuConfig, "tofu", ["tofu-llama2-7b"], overrides)
    part = load_config(TofuConfig, "tofu", ["tofu-llama2-7b"], [*overrides, "model.finetune.subset=400"])
    shapes, sizes = memory.model_shapes(full)
    every, subset = memory.finetune_estimate(full, shapes, sizes), memory.finetune_estimate(part, shapes, sizes)
    assert (every["rows"], subset["rows"]) == (4000, 400)
    assert subset["steps"] == math.ceil(400 / 32) * 5 == 65  # ceil(rows / batch) x epochs
    assert subset["tokens"] == 400 * 5 * 512 and subset["flops"] == every["flops"] / 10
    assert subset["total"] == every["total"]  # memory is per micro-batch: a subset saves time, not bytes
    printed = memory.render(part, shapes, sizes)
    assert "model.finetune.enabled: a subset of 400 of the 4,000 TOFU rows, 5 epochs, batch 32" in printed
    assert "65 optimizer steps" in printed and "1,024,000 tokens" in printed
    assert "(the subset's rows minus the task's forget rows)" in printed
    # more rows than TOFU has is refused before any work, through the command line too
    argv = ["tofu", "--preset", "tofu-llama2-7b", "--set", f"model.name_or_path={folder}", "--set",
            "model.finetune.enabled=true", "--set", "model.finetune.subset=4001", "--dry-run"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("dualoptim tofu: error: model.finetune.subset 4001 is more than the 4000 training rows; "
                   "expected at most 4000")  # fmt: skip
