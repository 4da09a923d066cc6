"""Every strategy honours both learning rates on the TOFU task (the Trainer, settings from the config).

A first Adam step moves each coordinate by about its learning rate whatever the gradient's scale,
so the largest move of a step tells which learning rate it used. The two rates are 100x apart.
"""

import dataclasses

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from dualoptim.config import load_config
from dualoptim.llm.config import TofuConfig, is_single_rate, learning_rates, optimizer_settings, schedule, validate
from dualoptim.llm.data import QAFormat, TofuSource, UnlearningCollator, UnlearningDataset, load_split
from dualoptim.llm.losses import UnlearningLoss
from dualoptim.llm.trainer import UnlearningTrainer
from dualoptim.strategies import STRATEGIES

FORGET_LR, RETAIN_LR = 1e-2, 1e-4


class _Moves(TrainerCallback):
    """The largest |change| of any weight at each optimizer step."""

    def __init__(self, model):
        self.last = [p.detach().clone() for p in model.parameters()]
        self.moves = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        now = [p.detach().clone() for p in model.parameters()]
        self.moves.append(max((a - b).abs().max().item() for a, b in zip(now, self.last)))
        self.last = now


def _trainer(strategy, model, tokenizer, tofu_dir, tmp_path, steps, overrides=()):
    config = load_config(TofuConfig, "tofu", ["tofu-tiny"], [
        f"unlearn.lr={RETAIN_LR}", f"unlearn.forget_lr={FORGET_LR}", "unlearn.forget_steps=1",
        "unlearn.retain_steps=1", f"unlearn.steps={steps}", "unlearn.weight_decay=0.0", *overrides])  # fmt: skip
    validate(config)
    lr, forget_lr = learning_rates(config, "GA+GD", strategy)
    settings = dataclasses.replace(optimizer_settings(config), retain_lr=lr, forget_lr=forget_lr)
    split = load_split(TofuSource(tofu_dir), "forget10", "1")
    args = TrainingArguments(
        output_dir=str(tmp_path / "t"), max_steps=steps, per_device_train_batch_size=2, use_cpu=True,
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=0,
        dataloader_pin_memory=False, max_grad_norm=1.0,
    )  # fmt: skip
    return UnlearningTrainer(
        model=model, args=args, train_dataset=UnlearningDataset(tokenizer, split, QAFormat(), 64),
        data_collator=UnlearningCollator(tokenizer.pad_token_id), loss=UnlearningLoss("GA+GD"),
        strategy=strategy, optimizer_settings=settings, schedule=schedule(config),
    )  # fmt: skip


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES.names() if not STRATEGIES.get(s).joint and not is_single_rate(s)])
def test_forget_and_retain_steps_use_their_own_rates(strategy, model, tokenizer, tofu_dir, tmp_path):
    trainer = _trainer(strategy, model, tokenizer, tofu_dir, tmp_path, steps=2)
    moves = _Moves(model)
    trainer.add_callback(moves)
    trainer.train()
    assert [o for _, o in trainer.objective_log] == ["forget", "retain"]
    forget_move, retain_move = moves.moves
    assert forget_move == pytest.approx(FORGET_LR, rel=0.1)
    # a retain step after a forget step: a fresh retain state (dual) moves by lr exactly, a shared
    # one (alternate) by a few lr at most; either way two orders of magnitude below forget_lr
    if strategy == "dual+-ref":
        # the reference's sqrt(|v|): after a forget step, coordinates whose retain gradient is far
        # below the forget one take steps far above lr (tests/optim/test_plus_ref.py); still far
        # below what the forget rate gives such a step
        assert 0.1 * RETAIN_LR < retain_move
        return
    assert 0.1 * RETAIN_LR < retain_move < 3 * RETAIN_LR


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES.names() if STRATEGIES.get(s).joint])
def test_a_joint_step_weighs_the_forget_loss_by_the_ratio_of_the_rates(strategy, model, tokenizer, tofu_dir, tmp_path):
    trainer = _trainer(strategy, model, tokenizer, tofu_dir, tmp_path, steps=1)
    moves = _Moves(model)
    trainer.add_callback(moves)
    trainer.train()
    assert [o for _, o in trainer.objective_log] == ["joint"]
    assert moves.moves[0] == pytest.approx(RETAIN_LR, rel=0.1)  # one step, with the retain rate
    # ... on L_r + (forget_lr / lr) L_f
    inputs = next(iter(trainer.get_train_dataloader()))
    loss = UnlearningLoss("GA+GD")
    with torch.no_grad():
        joint = trainer.compute_loss(model, inputs)
        parts = loss.forget(model, inputs, None), loss.retain(model, inputs, None)
    assert joint.item() == pytest.approx((FORGET_LR / RETAIN_LR) * parts[0].item() + parts[1].item(), rel=1e-5)


@pytest.mark.parametrize(("overrides", "rate"), [((), RETAIN_LR), ((f"unlearn.lrs={{GA+GD: {{alternate: {FORGET_LR}}}}}",), FORGET_LR)])
def test_alternate_steps_both_objectives_at_its_one_rate(overrides, rate, model, tokenizer, tofu_dir, tmp_path):
    """The papers' Alternate: unlearn.forget_lr does not reach it; its one rate is lr, or its tuned unlearn.lrs."""
    trainer = _trainer("alternate", model, tokenizer, tofu_dir, tmp_path, steps=2, overrides=overrides)
    moves = _Moves(model)
    trainer.add_callback(moves)
    trainer.train()
    forget_move, retain_move = moves.moves
    assert forget_move == pytest.approx(rate, rel=0.1)
    assert 0.1 * rate < retain_move < 3 * rate
