"""Unlearning with ``transformers.Trainer``: forget and retain steps in the alternation pattern.

:class:`UnlearningTrainer` is a ``Trainer`` whose training items pair a forget row with a retain
row (:class:`dualoptim.llm.data.UnlearningDataset`), drawn by
:class:`dualoptim.llm.data.AlternatingSampler` as the reference's alternating sampler draws them:
forget steps cover every forget row once per pass, retain steps cycle over the retain set. Which
half an optimizer step uses is a function of the optimizer step count alone
(:meth:`dualoptim.schedule.Schedule.objective_at`), so

* every micro-batch accumulated into one optimizer step serves the same objective (the research
  code mixed forget and retain micro-batches under multi-GPU);
* every process computes the same objective at the same step (the step count is global);
* the pattern survives a resume from a checkpoint (the step count is saved with it).

The objective is handed to the optimizer before its ``step()`` (``set_objective``), which the
Trainer and accelerate call without arguments. The optimizer comes from the strategy registry,
and its state is saved in and restored from checkpoints by the Trainer as usual.

Example::

    trainer = UnlearningTrainer(
        model=model, args=TrainingArguments("out", max_steps=300, per_device_train_batch_size=8),
        train_dataset=UnlearningDataset(tokenizer, split, QAFormat(), max_length=256),
        data_collator=UnlearningCollator(tokenizer.pad_token_id),
        loss=UnlearningLoss("ME+GD"), strategy="dual",
        optimizer_settings=OptimizerSettings(forget_lr=1e-5, retain_lr=1e-5, family="adamw"),
    )
    trainer.train()
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from dualoptim.errors import NonFiniteLoss
from dualoptim.llm.data import AlternatingSampler, UnlearningDataset
from dualoptim.llm.losses import UnlearningLoss
from dualoptim.schedule import Schedule
from dualoptim.strategies import (
    STRATEGIES,
    OptimizerSettings,
    build_optimizer,
    joint_forget_weight,
    set_objective,
)

__all__ = ["UnlearningTrainer", "TrajectoryCallback", "frozen_copy"]

#: the LLM papers' defaults: AdamW on both sides at lr 1e-5, one forget step per five retain steps
#: (``alternate`` is the papers' Alternate there: one rate for both objectives)
DEFAULT_SETTINGS = OptimizerSettings(forget_lr=1e-5, retain_lr=1e-5, family="adamw", betas=(0.9, 0.95),
                                     weight_decay=0.0, forget_betas=(0.9, 0.95), forget_weight_decay=0.0,
                                     two_rate_alternate=False)  # fmt: skip
DEFAULT_SCHEDULE = Schedule(1, forget_steps=1, retain_steps=5)


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The reference model of NPO, DPO and KL: a copy of the model before unlearning, frozen."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference


class UnlearningTrainer(Trainer):
    """A ``Trainer`` that unlearns: see the module docstring.

    Args (on top of ``Trainer``'s):
        loss: the forget + retain losses and their weights.
        strategy: a name from :data:`dualoptim.strategies.STRATEGIES` (``joint``, ``alternate``,
            ``dual``, ``dual+``, ...). Ignored when ``optimizers=(opt, sched)`` is passed.
        optimizer_settings: learning rates, betas, eps, weight decay of the strategy's optimizer.
        schedule: the forget:retain pattern of the alternating strategies (its ``forget_steps``
            and ``retain_steps``; default 1:5).
        reference_model: frozen model for NPO/DPO/KL; made with :func:`frozen_copy` when the loss
            needs one and none is given.
    """

    def __init__(
        self,
        *args: Any,
        loss: UnlearningLoss,
        strategy: str = "dual",
        optimizer_settings: OptimizerSettings | None = None,
        schedule: Schedule | None = None,
        reference_model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        self.unlearning_loss = loss
        self.joint = STRATEGIES.get(strategy).joint
        self.strategy = strategy
        self.optimizer_settings = optimizer_settings or DEFAULT_SETTINGS
        self.schedule = schedule or DEFAULT_SCHEDULE
        super().__init__(*args, **kwargs)
        # the paired items are not model inputs: the Trainer must not drop their columns
        self.args.remove_unused_columns = False
        if reference_model is None and loss.needs_reference:
            reference_model = frozen_copy(self.model)
        if reference_model is not None:
            reference_model.to(self.args.device)
        self.reference_model = reference_model
        # our losses are means already: let the Trainer divide by the accumulation steps itself
        self.model_accepts_loss_kwargs = False
        #: (optimizer step, objective) of every micro-batch, for checks and the run record
        self.objective_log: list[tuple[int, str]] = []
        #: (optimizer step, "forget" | "retain", loss value) of every micro-batch: the loss split by side
        self.loss_log: list[tuple[int, str, float]] = []
        self._logged_until = 0  # loss_log entries already reported by log()

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        """The reference's protocol for paired unlearning data: :class:`AlternatingSampler`, so that
        forget steps cover every forget row once per pass and retain steps cycle over the retain set
        (another dataset keeps the Trainer's own sampler)."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if not isinstance(dataset, UnlearningDataset):
            return super()._get_train_sampler(train_dataset)
        if self.args.max_steps < 1:
            raise ValueError(
                f"UnlearningTrainer needs TrainingArguments.max_steps >= 1, got {self.args.max_steps}: the "
                "alternation and the passes over the forget set are counted in optimizer steps"
            )
        seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
        return AlternatingSampler(
            len(dataset.forget), len(dataset.retain), schedule=self.schedule, steps=self.args.max_steps,
            rows_per_step=self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
            * self.args.world_size, joint=self.joint, seed=seed,
        )  # fmt: skip

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            params = [p for p in (model or self.model).parameters() if p.requires_grad]
            self.optimizer = build_optimizer(self.strategy, params, self.optimizer_settings)
        return self.optimizer

    def current_objective(self) -> str:
        """``"joint"``, or the schedule's objective at the current optimizer step."""
        return "joint" if self.joint else self.schedule.objective_at(self.state.global_step).value

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        objective = self.current_objective()
        if objective == "joint":
            # one step on L_r + (eta_f / eta_r) L_f, taken with the retain learning rate
            set_objective(self.optimizer, "retain")
            weight = joint_forget_weight(self.optimizer_settings)
            parts = {
                "forget": self.unlearning_loss.forget(model, inputs, self.reference_model),
                "retain": self.unlearning_loss.retain(model, inputs, self.reference_model),
            }
            loss = weight * parts["forget"] + parts["retain"]
        else:
            # the optimizer must know whose gradients its next step() applies
            set_objective(self.optimizer, objective)
            side = self.unlearning_loss.forget if objective == "forget" else self.unlearning_loss.retain
            loss = side(model, inputs, self.reference_model)
            parts = {objective: loss}
        finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # all processes stop together: one that raised alone would leave the others waiting
            # forever in the gradient all-reduce
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() == 0:
            value = loss.item() if not torch.isfinite(loss) else "on another process"
            raise NonFiniteLoss(
                f"non-finite {objective} loss {value} ({self.unlearning_loss.name}, {self.strategy}) "
                f"at optimizer step {self.state.global_step}"
            )
        self.objective_log.append((self.state.global_step, objective))
        # weighted forget loss (with its coefficient and sign) and retain loss, logged apart: their
        # sum alone hides which side moves
        self.loss_log += [(self.state.global_step, side, value.item()) for side, value in parts.items()]
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's log, with ``forget_loss`` and ``retain_loss``: the mean of each side's loss
        over the micro-batches since the last log (a side with no micro-batch there is left out)."""
        if "loss" in logs:
            for side, mean in _side_means(self.loss_log[self._logged_until :]).items():
                logs[f"{side}_loss"] = mean
            self._logged_until = len(self.loss_log)
        super().log(logs, *args, **kwargs)

    def loss_history(self) -> list[dict[str, float]]:
        """Per optimizer step, the mean forget and retain loss of its micro-batches (this process's)."""
        steps: dict[int, list[tuple[int, str, float]]] = {}
        for entry in self.loss_log:
            steps.setdefault(entry[0], []).append(entry)
        return [{"step": step + 1, **_side_means(entries)} for step, entries in sorted(steps.items())]


def _side_means(entries: list[tuple[int, str, float]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for _, side, value in entries:
        sums.setdefault(side, []).append(value)
    return {side: sum(values) / len(values) for side, values in sums.items()}


class TrajectoryCallback(TrainerCallback):
    """Calls ``evaluate(model) -> dict`` every ``every`` optimizer steps (and at step 0).

    The results, with the step, land in :attr:`history`: the forget and retain curves of a run.
    """

    def __init__(self, evaluate: Callable[[torch.nn.Module], dict[str, float]], every: int) -> None:
        if every < 1:
            raise ValueError(f"eval_every must be >= 1, got {every}")
        self.evaluate = evaluate
        self.every = every
        self.history: list[dict[str, float]] = []

    def _record(self, step: int, model: torch.nn.Module) -> None:
        was_training = model.training
        model.eval()
        self.history.append({"step": step, **self.evaluate(model)})
        model.train(was_training)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0 and model is not None:
            self._record(0, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None and (
            state.global_step % self.every == 0 or state.global_step == state.max_steps
        ):
            if not self.history or self.history[-1]["step"] != state.global_step:
                self._record(state.global_step, model)
