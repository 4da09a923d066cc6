"""The image-classification unlearning loop: one function for every method and every strategy."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from dualoptim.batches import BatchStream
from dualoptim.errors import NonFiniteLoss
from dualoptim.masks import mask_gradients, restore_frozen, snapshot_frozen
from dualoptim.optim import Objective
from dualoptim.schedule import Schedule, plan_steps
from dualoptim.strategies import STRATEGIES, OptimizerSettings, joint_forget_weight
from dualoptim.vision.methods.base import Method
from dualoptim.vision.types import Batch

__all__ = ["Checkpoints", "RunLog", "Source", "Stream", "unlearn"]

#: losses are checked for non-finite values every this many steps (and at evaluations and the end):
#: reading a value back from the device every step would make each step wait for the device
CHECK_EVERY = 16


@dataclass
class RunLog:
    """What one unlearning run did: time without evaluation, curves and gradient norms."""

    steps: int
    seconds: float = 0.0
    #: evaluations along the run: {"progress": fraction of steps done, metric: value, ...}
    curve: list[dict[str, float]] = field(default_factory=list)
    #: per objective, the gradient norm (after masking, before clipping) of every step.
    grad_norms: dict[str, list[float]] = field(default_factory=lambda: {"forget": [], "retain": []})
    grad_steps: dict[str, list[int]] = field(default_factory=lambda: {"forget": [], "retain": []})


class Stream(Protocol):
    """Endless shuffled mini-batches of one set, whose position can be saved and restored."""

    def next(self) -> Batch: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Source(Protocol):
    """A set too large to hold as one tensor: it streams batches and materialises small samples.

    :class:`dualoptim.vision.sources.LoaderSource` reads it through a ``DataLoader``.
    """

    def __len__(self) -> int: ...
    def stream(self, batch_size: int, generator: torch.Generator) -> Stream: ...
    def sample(self, limit: int, generator: torch.Generator) -> Batch: ...


class Checkpoints(Protocol):
    """Where the loop saves its state every ``every`` steps, and finds it again after an interrupt."""

    every: int

    def load(self) -> dict[str, Any] | None: ...
    def save(self, state: dict[str, Any]) -> None: ...


def _size(data: Batch | Source) -> int:
    return len(data[1]) if isinstance(data, tuple) else len(data)


def _stream(data: Batch | Source, batch_size: int, generator: torch.Generator) -> Stream:
    return BatchStream(data, batch_size, generator) if isinstance(data, tuple) else data.stream(batch_size, generator)


def _for_prepare(data: Batch | Source, method: Method, generator: torch.Generator) -> Batch:
    """What :meth:`Method.prepare` sees: the whole set, or a sample of a streamed set as large as it asks for."""
    return data if isinstance(data, tuple) else data.sample(method.prepare_examples(), generator)


def unlearn(
    model: nn.Module,
    method: Method,
    forget: Batch | Source,
    retain: Batch | Source,
    *,
    strategy: str,
    settings: OptimizerSettings,
    schedule: Schedule,
    batch_size: int = 64,
    seed: int = 0,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_points: int = 0,
    progress_bar: bool = False,
    max_steps: int | None = None,
    checkpoints: Checkpoints | None = None,
) -> RunLog:
    """Unlearn ``forget`` from ``model`` in place, keeping ``retain``; return the :class:`RunLog`.

    ``evaluate`` (model -> metrics) is called ``eval_points`` times along the run plus once at the
    end; its time is not counted in ``RunLog.seconds``. Raises :class:`NonFiniteLoss` when a
    loss or the parameters stop being finite.

    ``forget`` and ``retain`` are (images, labels) tensors, or :class:`Source` objects streamed batch by
    batch. ``max_steps`` cuts the plan short. With ``checkpoints`` the whole state (model,
    optimizer, random generators, stream positions) is saved every ``checkpoints.every`` steps and
    a saved state is resumed from: the resumed run takes the same steps as an uninterrupted one.
    """
    spec = STRATEGIES.get(strategy)
    # One seed decides everything random in the run: batch order, random labels, mask subsets.
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    if method.from_scratch:
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    # Masks and teachers look at the model before it changes.
    method.prepare(model, _for_prepare(forget, method, generator), _for_prepare(retain, method, generator), generator)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = spec.build(params, settings)
    plan = plan_steps(
        schedule,
        forget_size=_size(forget),
        retain_size=_size(retain),
        batch_size=batch_size,
        has_forget=method.has_forget,
        has_retain=method.has_retain,
        joint=spec.joint,
    )
    if max_steps is not None:
        plan = plan[:max_steps]
    scheduler = None
    if method.lr_schedule == "cosine":
        # Outer lr of every strategy's optimizer scales both objectives' rates (SFRon's cosine decay).
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, len(plan)) / len(plan)))
        )
    streams = {
        Objective.FORGET: _stream(forget, batch_size, generator),
        Objective.RETAIN: _stream(retain, batch_size, generator),
    }
    losses = {Objective.FORGET: method.forget_loss, Objective.RETAIN: method.retain_loss}
    masks = {Objective.FORGET: method.forget_mask, Objective.RETAIN: method.retain_mask}
    clips = {Objective.FORGET: method.forget_clip, Objective.RETAIN: None}
    forget_weight = joint_forget_weight(settings)
    log = RunLog(steps=len(plan))
    eval_at = {round(i * len(plan) / eval_points) for i in range(eval_points)} if eval_points else set()
    eval_seconds = 0.0
    # Losses and gradient norms stay on the device until they are checked or logged.
    unchecked: list[tuple[int, Objective, Tensor]] = []
    norms: dict[Objective, list[Tensor]] = {Objective.FORGET: [], Objective.RETAIN: []}

    def check_losses() -> None:
        """Stop with the first non-finite loss since the last check (one read-back for all of them)."""
        if not unchecked:
            return
        finite = torch.stack([torch.isfinite(loss) for _, _, loss in unchecked])
        if not bool(finite.all()):
            step, objective, loss = unchecked[int((~finite).nonzero()[0])]
            raise NonFiniteLoss(f"{objective.value} loss became {loss.item()} at step {step} of {len(plan)}")
        unchecked.clear()

    def flush_norms() -> None:
        """Move the gradient norms kept on the device into the log (one read-back for all of them)."""
        for objective, values in norms.items():
            if values:
                log.grad_norms[objective.value].extend(torch.stack(values).tolist())
                values.clear()

    def record(step: int) -> None:
        nonlocal eval_seconds
        check_losses()
        tick = time.perf_counter()
        log.curve.append({"progress": step / len(plan), **evaluate(model)})
        eval_seconds += time.perf_counter() - tick

    first = 0
    if checkpoints is not None and (saved := checkpoints.load()) is not None:
        # Resume: everything that decides the remaining steps comes back as it was saved.
        first, done_seconds = _restore(saved, model, optimizer, scheduler, generator, streams, log)
        start -= done_seconds
    steps = range(first, len(plan))
    if progress_bar:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"{type(method).__name__}/{strategy}", leave=False, unit="step",
                     initial=first, total=len(plan))  # fmt: skip
    for step in steps:
        if evaluate is not None and step in eval_at:
            record(step)
        if step % CHECK_EVERY == 0:
            check_losses()
        objectives = plan[step]
        progress = step / len(plan)
        model.train()
        total: list[Tensor] | None = None
        for objective in objectives:
            loss = losses[objective](model, streams[objective].next(), progress)
            unchecked.append((step, objective, loss.detach()))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            # Only a parameter this loss does not use (rare) gets a zero gradient.
            grads = {name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(named, grads)}
            # Masked weights get no gradient from this objective (SalUn: both, SFRon: forget only).
            grads = mask_gradients(grads, masks[objective])
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads.values()))))
            norms[objective].append(norm)
            log.grad_steps[objective.value].append(step)
            values = list(grads.values())
            # SFRon clips the global norm of the forget gradient; the scale is computed on the
            # device (in float64, as a Python float would be) so that the step does not wait.
            if clips[objective] is not None:
                scale = torch.where(norm.double() > clips[objective], clips[objective] / norm.double(), 1.0)
                values = torch._foreach_mul(values, scale.to(norm.dtype))
            # Joint steps add L_f and L_r gradients here, so methods never add losses themselves;
            # the forget gradient is weighted eta_f / eta_r so that a joint step honours both rates.
            weight = forget_weight if objective is Objective.FORGET and len(objectives) > 1 else 1.0
            if total is None:
                total = values if weight == 1.0 else torch._foreach_mul(values, weight)
            else:
                torch._foreach_add_(total, values, alpha=weight)
        for p, g in zip(params, total):
            p.grad = g
        # Weights frozen for this step's objectives are put back after the step: weight decay and
        # momentum would otherwise still move them.
        frozen = snapshot_frozen(model, [masks[o] for o in objectives])
        # A joint step sums both losses and is stepped as its last objective (retain, or forget alone).
        try:
            optimizer.step(objective=objectives[-1])
        except FloatingPointError as error:  # 8-bit states refuse non-finite gradients
            check_losses()  # a non-finite loss is the better explanation
            raise NonFiniteLoss(f"non-finite gradient at step {step} of {len(plan)}: {error}") from None
        restore_frozen(model, frozen)
        if scheduler is not None:
            scheduler.step()
        if checkpoints is not None and (step + 1) % checkpoints.every == 0 and step + 1 < len(plan):
            check_losses()  # never save a state that a non-finite loss already spoiled
            flush_norms()
            checkpoints.save(_state(step + 1, time.perf_counter() - start - eval_seconds, model, optimizer,
                                    scheduler, generator, streams, log))  # fmt: skip
    check_losses()
    optimizer.zero_grad(set_to_none=True)
    flush_norms()
    if not all(torch.isfinite(p).all() for p in params):
        raise NonFiniteLoss(f"parameters became non-finite during the {len(plan)} steps")
    if evaluate is not None:
        record(len(plan))
    log.seconds = time.perf_counter() - start - eval_seconds
    return log


def _state(step, seconds, model, optimizer, scheduler, generator, streams, log) -> dict[str, Any]:
    """Everything a resumed run needs to take exactly the steps an uninterrupted one would."""
    return {
        "step": step,
        "seconds": seconds,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "streams": {objective.value: stream.state_dict() for objective, stream in streams.items()},
        "log": {"grad_norms": log.grad_norms, "grad_steps": log.grad_steps},
    }


def _restore(state, model, optimizer, scheduler, generator, streams, log) -> tuple[int, float]:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    for objective, stream in streams.items():
        stream.load_state_dict(state["streams"][objective.value])
    log.grad_norms, log.grad_steps = state["log"]["grad_norms"], state["log"]["grad_steps"]
    return state["step"], state["seconds"]
