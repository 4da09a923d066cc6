"""UnlearningTrainer: alternation under gradient accumulation, resume, 2 processes, bad losses."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from dualoptim.errors import NonFiniteLoss
from dualoptim.llm.data import QAFormat, TofuSource, UnlearningCollator, UnlearningDataset, load_split
from dualoptim.llm.losses import UnlearningLoss
from dualoptim.llm.trainer import UnlearningTrainer
from dualoptim.schedule import Schedule
from dualoptim.strategies import STRATEGIES, OptimizerSettings

ROOT = Path(__file__).resolve().parents[2]


def _args(tmp_path, **overrides):
    options = dict(
        output_dir=str(tmp_path / "trainer"), max_steps=6, per_device_train_batch_size=2,
        gradient_accumulation_steps=2, use_cpu=True, report_to="none", save_strategy="no",
        logging_strategy="no", disable_tqdm=True, seed=0, dataloader_pin_memory=False,
    )
    options.update(overrides)
    return TrainingArguments(**options)


def _trainer(model, tokenizer, tofu_dir, tmp_path, strategy="dual", loss="ME+GD", schedule=(1, 2), **overrides):
    split = load_split(TofuSource(tofu_dir), "forget10", "1")
    return UnlearningTrainer(
        model=model, args=_args(tmp_path, **overrides),
        train_dataset=UnlearningDataset(tokenizer, split, QAFormat(), 64),
        data_collator=UnlearningCollator(tokenizer.pad_token_id), loss=UnlearningLoss(loss),
        strategy=strategy, optimizer_settings=OptimizerSettings(forget_lr=2e-3, retain_lr=1e-3, family="adamw"),
        schedule=Schedule(1, *schedule),
    )


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)


def test_schedule_pattern():
    schedule = Schedule(1, 1, 5)
    assert [schedule.objective_at(s).value for s in range(7)] == ["forget"] + ["retain"] * 5 + ["forget"]
    assert [Schedule(1, 2, 1).objective_at(s).value for s in range(4)] == ["forget", "forget", "retain", "forget"]
    with pytest.raises(ValueError, match="needs fixed forget_steps and retain_steps"):
        Schedule(1, None, 5).objective_at(0)


def test_logged_loss_is_split_into_forget_and_retain(model, tokenizer, tofu_dir, tmp_path):
    trainer = _trainer(model, tokenizer, tofu_dir, tmp_path, logging_strategy="steps", logging_steps=3)
    trainer.train()
    history = trainer.loss_history()
    # 1:2 alternation: steps 1 and 4 are forget steps, the others retain steps; never both
    assert [sorted(h) for h in history] == [["forget", "step"] if h["step"] in (1, 4) else ["retain", "step"]
                                            for h in history]
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    # ME's forget loss is an entropy gap, GD's retain loss an NLL: both positive here, and distinct
    assert all(v > 0 for h in history for k, v in h.items() if k != "step")
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all("forget_loss" in e and "retain_loss" in e for e in logged)
    # each log reports the mean of its window's micro-batches
    forget = [v for s, side, v in trainer.loss_log if side == "forget" and s < 3]
    assert logged[0]["forget_loss"] == pytest.approx(sum(forget) / len(forget))


def test_gradient_checkpointing_changes_memory_not_the_result(model, tokenizer, tofu_dir, tmp_path):
    import copy

    twin = copy.deepcopy(model)
    _trainer(model, tokenizer, tofu_dir, tmp_path / "plain", max_steps=3).train()
    from dualoptim.llm.benchmark import _checkpointing

    checkpointed = _trainer(twin, tokenizer, tofu_dir, tmp_path / "ckpt", max_steps=3, **_checkpointing(True))
    checkpointed.train()
    assert getattr(twin, "is_activation_checkpointing", None) or twin.is_gradient_checkpointing
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_joint_logs_both_losses_of_every_step(model, tokenizer, tofu_dir, tmp_path):
    trainer = _trainer(model, tokenizer, tofu_dir, tmp_path, strategy="joint", max_steps=2)
    trainer.train()
    assert [sorted(h) for h in trainer.loss_history()] == [["forget", "retain", "step"]] * 2


def test_accumulated_micro_batches_never_mix_objectives(model, tokenizer, tofu_dir, tmp_path):
    trainer = _trainer(model, tokenizer, tofu_dir, tmp_path)
    trainer.train()
    # 6 optimizer steps x 2 micro-batches, both of one step on the same objective
    assert trainer.objective_log == [(s, o) for s, o in enumerate(["forget", "retain", "retain"] * 2) for _ in (0, 1)]
    dual = _inner(trainer.optimizer)
    assert {float(s["step"]) for s in dual.forget.state.values()} == {2.0}
    assert {float(s["step"]) for s in dual.retain.state.values()} == {4.0}


class _RowRecorder(UnlearningTrainer):
    """Records the forget and retain rows (as their token ids) of every micro-batch it computes."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        objective = self.current_objective()
        for side in ("forget", "retain"):
            if objective in (side, "joint"):
                ids, mask = inputs[side]["input_ids"], inputs[side]["attention_mask"]
                rows = [tuple(i[m.bool()].tolist()) for i, m in zip(ids, mask)]
                self.rows_log.append((self.state.global_step, side, rows))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def _row_index(dataset, side):
    return {tuple(row["input_ids"]): index for index, row in enumerate(getattr(dataset, side))}


def test_one_pass_visits_each_forget_row_once_under_gradient_accumulation(model, tokenizer, tofu_dir, tmp_path):
    # 4 forget rows, 2 rows x 2 micro-batches = 4 rows a step: each forget step is one pass
    split = load_split(TofuSource(tofu_dir), "forget10", "1")
    dataset = UnlearningDataset(tokenizer, split, QAFormat(), 64)
    trainer = _RowRecorder(
        model=model, args=_args(tmp_path, max_steps=9), train_dataset=dataset,
        data_collator=UnlearningCollator(tokenizer.pad_token_id), loss=UnlearningLoss("GA+GD"), strategy="dual",
        optimizer_settings=OptimizerSettings(forget_lr=1e-3, retain_lr=1e-3, family="adamw"), schedule=Schedule(1, 1, 2),
    )  # fmt: skip
    trainer.rows_log = []
    trainer.train()
    forget_index, retain_index = _row_index(dataset, "forget"), _row_index(dataset, "retain")
    forget = {}
    for step, side, rows in trainer.rows_log:
        if side == "forget":
            forget.setdefault(step, []).extend(forget_index[row] for row in rows)
    assert sorted(forget) == [0, 3, 6]  # the forget steps of 1:2
    for step, rows in forget.items():
        assert sorted(rows) == [0, 1, 2, 3], f"forget step {step}"
    # 6 retain steps x 4 rows = 24 draws over the 12 retain rows: two whole passes
    retain = [retain_index[row] for _, side, rows in trainer.rows_log if side == "retain" for row in rows]
    assert len(retain) == 24 and sorted(retain[:12]) == sorted(retain[12:]) == list(range(12))


def test_the_trainer_needs_max_steps(model, tokenizer, tofu_dir, tmp_path):
    trainer = _trainer(model, tokenizer, tofu_dir, tmp_path, max_steps=-1, num_train_epochs=1)
    with pytest.raises(ValueError, match="UnlearningTrainer needs TrainingArguments.max_steps >= 1, got -1"):
        trainer.get_train_dataloader()


def test_joint_steps_the_sum(model, tokenizer, tofu_dir, tmp_path):
    trainer = _trainer(model, tokenizer, tofu_dir, tmp_path, strategy="joint", max_steps=3)
    trainer.train()
    assert [o for _, o in trainer.objective_log] == ["joint"] * 6
    shared = _inner(trainer.optimizer)  # SharedState: one AdamW for both objectives
    assert {float(s["step"]) for s in shared.inner.state.values()} == {3.0}


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_moves_the_weights(strategy, model, tokenizer, tofu_dir, tmp_path):
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _trainer(model, tokenizer, tofu_dir, tmp_path, strategy=strategy, max_steps=3,
                       gradient_accumulation_steps=1)
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tokenizer, tofu_dir, tmp_path, tiny_config):
    from dualoptim.llm.models import build_tiny_llama

    straight = _trainer(build_tiny_llama(tiny_config, tokenizer, 0), tokenizer, tofu_dir, tmp_path / "a",
                        strategy="dual+")
    straight.train()
    saving = _trainer(build_tiny_llama(tiny_config, tokenizer, 0), tokenizer, tofu_dir, tmp_path / "b",
                      strategy="dual+", save_strategy="steps", save_steps=3)
    saving.add_callback(_StopAt(3))  # an interruption right after the checkpoint of step 3
    saving.train()
    checkpoint = tmp_path / "b" / "trainer" / "checkpoint-3"
    assert (checkpoint / "optimizer.pt").is_file()
    resumed = _trainer(build_tiny_llama(tiny_config, tokenizer, 0), tokenizer, tofu_dir, tmp_path / "b",
                       strategy="dual+", save_strategy="steps", save_steps=3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    # the schedule continued at step 3 (retain), and weights and optimizer state match bit for bit
    assert resumed.objective_log == [(s, o) for s, o in zip((3, 4, 5), ("forget", "retain", "retain")) for _ in (0, 1)]
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sa, sb = _inner(straight.optimizer).state_dict(), _inner(resumed.optimizer).state_dict()
    for key in sa["state"]:
        for part in sa["state"][key]:
            for name, value in sa["state"][key][part].items():
                torch.testing.assert_close(value, sb["state"][key][part][name], rtol=0, atol=0)


def test_non_finite_loss_stops_with_a_reason(model, tokenizer, tofu_dir, tmp_path):
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    trainer = _trainer(model, tokenizer, tofu_dir, tmp_path)
    with pytest.raises(NonFiniteLoss, match="non-finite forget loss nan \\(ME\\+GD, dual\\) at optimizer step 0"):
        trainer.train()


def test_unknown_strategy_is_named(model, tokenizer, tofu_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown strategy 'sgd'; valid: joint, alternate, alternate-2lr, dual, dual\\+, dual\\+-ref, dual-8bit"):
        _trainer(model, tokenizer, tofu_dir, tmp_path, strategy="sgd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_hold_identical_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(ROOT / "tests" / "llm" / "ddp_worker.py"), str(tmp_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    for name, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][name]), name
    # every process took the same objective at every step, and every micro-batch of a step (with
    # gradient accumulation, on 6 items per process) served the objective of that step
    schedule = Schedule(1, 1, 2)
    assert ranks[0]["objectives"] == ranks[1]["objectives"]
    assert all(objective == schedule.objective_at(step).value for step, objective in ranks[0]["objectives"])
    assert sorted({step for step, _ in ranks[0]["objectives"]}) == list(range(6))
    assert ranks[0]["forget_steps"] == 2 and ranks[0]["retain_steps"] == 4
    # the reference's sampler across processes: the 2 x 2 x 2 = 8 rows of forget steps 0 and 3 are
    # two passes over the 4 forget rows, each split between the ranks without a row twice in a pass
    for step in (0, 3):
        rows = ranks[0]["forget_rows"][step] + ranks[1]["forget_rows"][step]
        assert sorted(rows) == sorted(list(range(4)) * 2), step
        for rank in (0, 1):
            assert len(ranks[rank]["forget_rows"][step]) == 4
    assert ranks[0]["initial"] is not None
    assert any(not torch.equal(ranks[0]["initial"][k], v) for k, v in ranks[0]["weights"].items())
    # a loss that became NaN on one process stopped both, each with the reason
    assert (tmp_path / "rank0-nonfinite.txt").read_text().startswith("non-finite forget loss nan")
    assert (tmp_path / "rank1-nonfinite.txt").read_text().startswith("non-finite forget loss on another process")


@pytest.mark.parametrize("strategy", ["alternate", "dual", "dual+"])
def test_lora_trains_only_the_adapters(strategy, model, tokenizer, tofu_dir, tmp_path):
    from dualoptim.llm.models import apply_lora

    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    adapted = apply_lora(model, r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj"])
    trainer = _trainer(adapted, tokenizer, tofu_dir, tmp_path, strategy=strategy, loss="NPO+GD", max_steps=3)
    trainer.train()
    optimizer = _inner(trainer.optimizer)
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    named = dict(adapted.named_parameters())
    adapters = {name for name in named if "lora_" in name}
    # the optimizer holds exactly the adapters (4 tensors a layer), and only they moved
    assert adapters and stepped == {id(named[name]) for name in adapters}
    for name, p in named.items():
        original = name.replace("base_model.model.", "").replace(".base_layer", "")
        if name in adapters:
            continue
        assert torch.equal(p, base[original]), name
    assert any(not torch.equal(named[name], torch.zeros_like(named[name])) for name in adapters if "lora_B" in name)


def test_lora_target_that_matches_no_layer_is_named(model):
    from dualoptim.llm.models import apply_lora

    with pytest.raises(ValueError, match=r"unlearn.lora.target_modules \['qkv'\] match no linear layer"):
        apply_lora(model, r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "qkv"])
