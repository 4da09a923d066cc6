"""Every strategy honours both learning rates on the TOFU task (the Trainer, settings from the config).

A first Adam step moves each coordinate by about its learning rate whatever the gradient's scale,
so the largest move of a step tells which learning rate it used. The two rates are 100x apart.
"""

import dataclasses

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from dualoptim.config import load_config
from dualoptim.llm.benchmark import TofuBenchmark
from dualoptim.llm.config import (
    TofuConfig,
    forget_lr_of,
    is_single_rate,
    learning_rates,
    optimizer_settings,
    schedule,
    section_of,
    set_tuned_rates,
    tuned_rates_section,
    validate,
)
from dualoptim.llm.data import QAFormat, TofuSource, UnlearningCollator, UnlearningDataset, load_split
from dualoptim.llm.losses import UnlearningLoss
from dualoptim.llm.sweep import scaled_config
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


def _config(*overrides):
    return load_config(TofuConfig, "tofu", [], ["strategies=[joint,alternate,alternate-2lr,dual,dual+,dual+-ref]",
                                                "losses=[ME+GD,GA+GD]", *overrides])  # fmt: skip


def test_a_forget_rate_given_to_alternate_is_an_error_that_says_so():
    with pytest.raises(ValueError, match=r"unlearn.forget_lrs.GA\+GD.alternate: alternate steps both objectives at "
                                         r"one learning rate .* set unlearn.lrs.GA\+GD.alternate, or use alternate-2lr"):
        validate(_config("unlearn.forget_lrs={GA+GD: {alternate: 3e-5}}"))
    with pytest.raises(ValueError, match=r"unlearn.lrs.GA\+GD.dual: only a single-rate strategy \(alternate\)"):
        validate(_config("unlearn.lrs={GA+GD: {dual: 3e-5}}"))
    with pytest.raises(ValueError, match=r"unlearn.lrs.GA\+GD.alternate must be > 0, got -1"):
        validate(_config("unlearn.lrs={GA+GD: {alternate: -1}}"))


def test_alternate_takes_one_rate_and_the_others_keep_theirs():
    config = _config("unlearn.lr=1e-5", "unlearn.forget_lr=4e-5", "unlearn.lrs={GA+GD: {alternate: 2e-5}}",
                     "unlearn.forget_lrs={GA+GD: {alternate-2lr: 9e-5, dual+: 7e-5}}")  # fmt: skip
    validate(config)
    assert learning_rates(config, "ME+GD", "alternate") == (1e-5, 1e-5)  # unlearn.forget_lr never reaches it
    assert learning_rates(config, "GA+GD", "alternate") == (2e-5, 2e-5)  # its tuned one rate
    assert learning_rates(config, "GA+GD", "alternate-2lr") == (1e-5, 9e-5)
    assert learning_rates(config, "ME+GD", "dual") == (1e-5, 4e-5)
    assert learning_rates(config, "GA+GD", "dual+-ref") == (1e-5, 7e-5)  # dual+'s rate until tuned itself
    section = section_of(config, "alternate", 2e-5)
    assert (section.lr, section.forget_lr) == (2e-5, 2e-5)


def test_tuned_rates_map_into_forget_lrs_or_lrs_and_back():
    """The one mapping the sweep writes its grid and best.yaml with: a tuned rate of alternate is its one
    rate (unlearn.lrs), every other strategy's a forget rate (unlearn.forget_lrs)."""
    tuned = {"GA+GD": {"alternate": 3e-5, "alternate-2lr": 9e-5, "dual": 2e-5}, "ME+GD": {"alternate": 1e-5}}
    assert tuned_rates_section(tuned) == {
        "forget_lrs": {"GA+GD": {"alternate-2lr": 9e-5, "dual": 2e-5}},
        "lrs": {"GA+GD": {"alternate": 3e-5}, "ME+GD": {"alternate": 1e-5}},
    }
    config = _config()
    set_tuned_rates(config, tuned)
    validate(config)
    for loss, rates in tuned.items():
        for strategy, rate in rates.items():
            assert forget_lr_of(config, loss, strategy) == rate
    assert learning_rates(config, "GA+GD", "alternate") == (3e-5, 3e-5)
    # the sweep's scaled grid point goes through the same mapping
    scaled = scaled_config(_config(), 3.0)
    validate(scaled)
    assert scaled.unlearn.lrs == {loss: {"alternate": 3e-5} for loss in ("ME+GD", "GA+GD")}
    assert "alternate" not in scaled.unlearn.forget_lrs["GA+GD"] and scaled.unlearn.forget_lrs["GA+GD"]["dual"] == 3e-5


def test_run_keys_of_the_other_strategies_do_not_change():
    """The run store finds the records it has: keys of these runs as main computed them before alternate
    got one rate (a new option that leaves a run alone must leave its key alone too)."""
    config = load_config(TofuConfig, "tofu", [], ["strategies=[joint,dual,dual+,dual-8bit,alternate]",
                                                  "losses=[ME+GD,GA+GD]", "unlearn.forget_lrs={GA+GD: {dual: 0.003}}"])  # fmt: skip
    benchmark = TofuBenchmark.__new__(TofuBenchmark)  # plan() reads the config alone
    benchmark.config = config
    keys = {(run.loss, run.strategy): run for run in benchmark.plan("1")}
    # alternate at one rate equal to the others' keeps its key too: the rates it runs with are the same
    assert {pair: run.key for pair, run in keys.items()} == {
        ("ME+GD", "joint"): "7790d9c589ec7b8a", ("ME+GD", "dual"): "be7f0b000e98bbbf",
        ("ME+GD", "dual+"): "4b03dfb5f88917bf", ("ME+GD", "dual-8bit"): "775491fc67036c7c",
        ("ME+GD", "alternate"): "9ea8eb11536db9ef", ("GA+GD", "joint"): "e245eb4733bdfb68",
        ("GA+GD", "dual"): "3b80bb35e5c43cb3", ("GA+GD", "dual+"): "575cf5a037cbdba1",
        ("GA+GD", "dual-8bit"): "46dd40fcaf9387bd", ("GA+GD", "alternate"): "78beffb4caa4ed0d",
    }  # fmt: skip
    alternate = keys[("GA+GD", "alternate")]
    assert (alternate.settings.retain_lr, alternate.settings.forget_lr) == (1e-5, 1e-5)
