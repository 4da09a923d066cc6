"""Run by ``torchrun --nproc_per_node 2`` from test_trainer.py: unlearn on 2 CPU processes (gloo).

Each rank saves its final weights, the objective of every micro-batch it computed, and the step
counts of the optimizer's forget and retain states to ``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.*


def main(out: Path) -> None:
    from transformers import TrainingArguments

    from dualoptim.errors import NonFiniteLoss
    from dualoptim.llm.data import (
        QAFormat,
        TofuSource,
        UnlearningCollator,
        UnlearningDataset,
        all_rows,
        load_split,
    )
    from dualoptim.llm.losses import FORGET_LOSSES, UnlearningLoss
    from dualoptim.llm.models import TinyModelConfig, build_tiny_llama, train_tokenizer
    from dualoptim.llm.trainer import UnlearningTrainer
    from dualoptim.schedule import Schedule
    from dualoptim.strategies import OptimizerSettings
    from tests.llm._tofu_fixture import write_tofu

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    folder = write_tofu(out / f"data-rank{rank}")
    source = TofuSource(folder)
    tokenizer = train_tokenizer([f"{r['question']} {r['answer']} I don't know." for r in all_rows(source)], 300)
    config = TinyModelConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)
    model = build_tiny_llama(config, tokenizer, seed=0)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    split = load_split(source, "forget10", "1")
    args = TrainingArguments(
        output_dir=str(out / "trainer"), max_steps=6, per_device_train_batch_size=2, gradient_accumulation_steps=2,
        use_cpu=True, ddp_backend="gloo", report_to="none", save_strategy="no", logging_strategy="no",
        disable_tqdm=True, seed=0, dataloader_pin_memory=False, remove_unused_columns=False,
    )
    class RowRecorder(UnlearningTrainer):
        """Records the forget rows (their indices) of every forget micro-batch this process computes."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.current_objective() == "forget":
                ids, mask = inputs["forget"]["input_ids"], inputs["forget"]["attention_mask"]
                rows = [forget_index[tuple(i[m.bool()].tolist())] for i, m in zip(ids, mask)]
                forget_rows.setdefault(self.state.global_step, []).extend(rows)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    dataset = UnlearningDataset(tokenizer, split, QAFormat(), 64)
    forget_index = {tuple(row["input_ids"]): index for index, row in enumerate(dataset.forget)}
    forget_rows: dict[int, list[int]] = {}
    trainer = RowRecorder(
        model=model, args=args, train_dataset=dataset,
        data_collator=UnlearningCollator(tokenizer.pad_token_id), loss=UnlearningLoss("ME+GD"),
        strategy="dual", optimizer_settings=OptimizerSettings(forget_lr=2e-3, retain_lr=1e-3, family="adamw"),
        schedule=Schedule(1, 1, 2),
    )
    trainer.train()
    inner = trainer.optimizer.optimizer  # accelerate's wrapper -> DualOptim
    first = next(iter(inner.forget.state.values()))
    retain_first = next(iter(inner.retain.state.values()))
    torch.save(
        {
            "initial": initial,
            "world_size": int(os.environ["WORLD_SIZE"]),
            "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            "objectives": trainer.objective_log,
            "forget_steps": float(first["step"]),
            "retain_steps": float(retain_first["step"]),
            "forget_rows": forget_rows,
        },
        out / f"rank{rank}.pt",
    )

    # a loss that is NaN on rank 0 only: both processes must stop with the reason, none may hang
    @FORGET_LOSSES.register("NAN-ON-RANK-0")
    def nan_on_rank_0(model, batch, reference=None, beta=0.1):
        loss = FORGET_LOSSES.get("GA")(model, batch, reference, beta)
        return loss * float("nan") if rank == 0 else loss

    poisoned = UnlearningTrainer(
        model=trainer.model.module if hasattr(trainer.model, "module") else trainer.model,
        args=args, train_dataset=UnlearningDataset(tokenizer, split, QAFormat(), 64),
        data_collator=UnlearningCollator(tokenizer.pad_token_id),
        loss=UnlearningLoss("NAN-ON-RANK-0+GD"), strategy="dual", optimizer_settings=OptimizerSettings(forget_lr=1e-3, retain_lr=1e-3, family="adamw"),
    )
    try:
        poisoned.train()
        outcome = "trained"
    except NonFiniteLoss as error:
        outcome = str(error)
    (out / f"rank{rank}-nonfinite.txt").write_text(outcome)


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]))
    finally:
        # Tear the process group down before the interpreter exits: a gloo group left to the
        # exit handlers can abort one rank ("terminate called without an active exception")
        # while the other still has its threads, which the launcher reports as a failed run.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
