"""Model loading: the hub/local path of the GPU presets, tested with a tiny save_pretrained folder."""

import pytest
import torch

from dualoptim.llm.data import QAFormat
from dualoptim.llm.models import build_tiny_llama, finetune, load_pretrained, tiny_model


def test_local_folder_loads_like_a_hub_checkpoint(model, tokenizer, tmp_path):
    folder = tmp_path / "tofu_ft_tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    loaded, loaded_tokenizer = load_pretrained(str(folder))
    ids = torch.tensor([[1, 5, 9, 12]])
    torch.testing.assert_close(loaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
    assert loaded_tokenizer.pad_token_id == tokenizer.pad_token_id


def test_pad_token_setting_and_its_absence(model, tokenizer, tmp_path):
    folder = tmp_path / "nopad"
    from transformers import AutoTokenizer

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    copy = AutoTokenizer.from_pretrained(folder)  # the fixture is shared: change a copy
    copy.pad_token = None
    copy.save_pretrained(folder)
    with pytest.raises(ValueError, match="has no pad token; set model.pad_token"):
        load_pretrained(str(folder))
    _, padded = load_pretrained(str(folder), pad_token="eos")
    assert padded.pad_token_id == padded.eos_token_id


def test_missing_model_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model path '.*nowhere' does not exist"):
        load_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="unknown model dtype 'float7'"):
        load_pretrained(str(tmp_path), dtype="float7")


def test_finetune_lowers_the_loss_and_the_cache_is_reused(tokenizer, tiny_config, tofu_dir, tmp_path):
    from dualoptim.llm.data import TofuSource, all_rows

    rows = all_rows(TofuSource(tofu_dir))
    model = build_tiny_llama(tiny_config, tokenizer, 0)
    log = finetune(model, tokenizer, rows, QAFormat(), tiny_config, 64, progress=False)
    assert log["epoch_losses"][-1] < log["epoch_losses"][0]
    first, info = tiny_model("target", rows, tokenizer, QAFormat(), tiny_config, 64, tmp_path, progress=False)
    assert info["cached"] is False
    again, info = tiny_model("target", rows, tokenizer, QAFormat(), tiny_config, 64, tmp_path, progress=False)
    assert info["cached"] is True
    for a, b in zip(first.parameters(), again.parameters()):
        torch.testing.assert_close(a, b)
