"""Run by ``torchrun`` from test_fsdp_trainer.py: unlearn a tiny Llama sharded with FSDP2 through
``transformers.Trainer`` / ``accelerate`` (``fsdp_config.version: 2``), save sharded checkpoints,
and resume from one.

``OUT/rank<r>-<phase>.pt`` holds, per phase (``full``: 6 uninterrupted steps; ``resumed``: the
same run resumed from its step-3 checkpoint), the full weights gathered on every rank, whether
the parameters were DTensors, and the optimizer's class.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.*


def run(out: Path, strategy: str, phase: str) -> None:
    from torch.distributed.tensor import DTensor
    from transformers import TrainingArguments

    from dualoptim.llm.data import (
        QAFormat,
        TofuSource,
        UnlearningCollator,
        UnlearningDataset,
        all_rows,
        load_split,
    )
    from dualoptim.llm.losses import UnlearningLoss
    from dualoptim.llm.models import TinyModelConfig, build_tiny_llama, train_tokenizer
    from dualoptim.llm.trainer import UnlearningTrainer
    from dualoptim.schedule import Schedule
    from dualoptim.strategies import OptimizerSettings
    from tests.llm._tofu_fixture import write_tofu

    rank = int(os.environ["RANK"])
    source = TofuSource(write_tofu(out / f"data-rank{rank}"))
    tokenizer = train_tokenizer([f"{r['question']} {r['answer']} I don't know." for r in all_rows(source)], 300)
    config = TinyModelConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)
    model = build_tiny_llama(config, tokenizer, seed=0)
    folder = out / f"trainer-{strategy}"
    args = TrainingArguments(
        output_dir=str(folder), max_steps=6, per_device_train_batch_size=2, report_to="none",
        save_strategy="steps", save_steps=3, logging_strategy="no", disable_tqdm=True, seed=0,
        dataloader_pin_memory=False, remove_unused_columns=False, fsdp=True,
        fsdp_config={"version": 2, "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"],
                     "state_dict_type": "SHARDED_STATE_DICT"},
    )  # fmt: skip
    trainer = UnlearningTrainer(
        model=model, args=args, train_dataset=UnlearningDataset(tokenizer, load_split(source, "forget10", "1"), QAFormat(), 64),
        data_collator=UnlearningCollator(tokenizer.pad_token_id), loss=UnlearningLoss("NPO+GD"), strategy=strategy,
        optimizer_settings=OptimizerSettings(forget_lr=2e-3, retain_lr=1e-3, family="adamw"), schedule=Schedule(1, 1, 2),
    )  # fmt: skip
    if phase == "resumed":
        shutil.rmtree(folder / "checkpoint-6", ignore_errors=True)
        trainer.train(resume_from_checkpoint=str(folder / "checkpoint-3"))
    else:
        trainer.train()
    sharded = all(isinstance(p, DTensor) for p in trainer.model.parameters())
    weights = {
        name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu().clone()
        for name, p in trainer.model.named_parameters()
    }
    torch.save({"sharded": sharded, "weights": weights, "optimizer": type(trainer.optimizer.optimizer).__name__},
               out / f"rank{rank}-{strategy}-{phase}.pt")  # fmt: skip
    torch.distributed.barrier()


if __name__ == "__main__":
    try:
        run(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
