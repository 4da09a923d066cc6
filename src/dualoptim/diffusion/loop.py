"""The diffusion unlearning loop: one function for every method and every strategy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from dualoptim.batches import BatchStream
from dualoptim.diffusion.methods.base import Context, Method
from dualoptim.errors import NonFiniteLoss
from dualoptim.masks import mask_gradients, restore_frozen, snapshot_frozen
from dualoptim.optim import Objective
from dualoptim.schedule import Schedule, plan_steps
from dualoptim.strategies import STRATEGIES, OptimizerSettings, joint_forget_weight

__all__ = ["RunLog", "unlearn"]


@dataclass
class RunLog:
    """What one run did: its steps, its time (mask and Fisher preparation included) and its losses."""

    steps: int
    seconds: float = 0.0
    losses: dict[str, list[float]] = field(default_factory=lambda: {"forget": [], "retain": []})
    grad_norms: dict[str, list[float]] = field(default_factory=lambda: {"forget": [], "retain": []})


def unlearn(
    model: nn.Module,
    method: Method,
    context: Context,
    *,
    strategy: str,
    settings: OptimizerSettings,
    iterations: int,
    batch_size: int = 64,
    seed: int = 0,
    progress_bar: bool = False,
) -> RunLog:
    """Unlearn ``context.forget_class`` from ``model`` in place; return the :class:`RunLog`.

    Each iteration is one forget step then one retain step (the 1:1 schedule of the reference
    code), or one joint step on both losses for a joint strategy. Raises :class:`NonFiniteLoss`
    when a loss or the parameters stop being finite.
    """
    spec = STRATEGIES.get(strategy)
    # One seed decides everything random in the run: batches, timesteps, noise.
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    # Masks, Fisher and replay look at the model before it changes.
    method.prepare(model, context)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = spec.build(params, settings)
    forget_set, retain_set = method.data()
    plan = plan_steps(Schedule(iterations, 1, 1), forget_size=len(forget_set[1]), retain_size=len(retain_set[1]),
                      batch_size=batch_size, has_forget=method.has_forget, has_retain=method.has_retain,
                      joint=spec.joint)  # fmt: skip
    streams = {Objective.FORGET: BatchStream(forget_set, batch_size, generator),
               Objective.RETAIN: BatchStream(retain_set, batch_size, generator)}  # fmt: skip
    losses = {Objective.FORGET: method.forget_loss, Objective.RETAIN: method.retain_loss}
    masks = {Objective.FORGET: method.forget_mask, Objective.RETAIN: method.retain_mask}
    clips = {Objective.FORGET: method.forget_clip, Objective.RETAIN: method.retain_clip}
    forget_weight = joint_forget_weight(settings)
    log = RunLog(steps=len(plan))
    steps = range(len(plan))
    if progress_bar:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"{type(method).__name__}/{strategy}", leave=False, unit="step")
    model.train()
    for step in steps:
        objectives = plan[step]
        progress = step / len(plan)
        total = [torch.zeros_like(p) for p in params]
        for objective in objectives:
            loss = losses[objective](model, streams[objective].next(), progress)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"{objective.value} loss became {loss.item()} at step {step} of {len(plan)}")
            log.losses[objective.value].append(loss.item())
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = {name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(named, grads)}
            # Masked weights get no gradient from this objective (SalUn: both, SFRon: forget only).
            grads = mask_gradients(grads, masks[objective])
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()])).item()
            log.grad_norms[objective.value].append(norm)
            # Each objective's gradient is clipped on its own (clip 1.0 in the reference code).
            if clips[objective] is not None and norm > clips[objective]:
                grads = {name: g * (clips[objective] / norm) for name, g in grads.items()}
            # Joint steps add the gradients here, the forget one weighted eta_f / eta_r so that the
            # step honours both rates; methods never add losses themselves.
            weight = forget_weight if objective is Objective.FORGET and len(objectives) > 1 else 1.0
            for accumulated, g in zip(total, grads.values()):
                accumulated.add_(g, alpha=weight)
        for p, g in zip(params, total):
            p.grad = g
        # Weights frozen for this step's objectives are put back after it: Adam's moments would
        # otherwise still move them.
        frozen = snapshot_frozen(model, [masks[o] for o in objectives])
        try:
            optimizer.step(objective=objectives[-1])
        except FloatingPointError as error:  # 8-bit states refuse non-finite gradients
            raise NonFiniteLoss(f"non-finite gradient at step {step} of {len(plan)}: {error}") from None
        restore_frozen(model, frozen)
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    if not all(torch.isfinite(p).all() for p in params):
        raise NonFiniteLoss(f"parameters became non-finite during the {len(plan)} steps")
    log.seconds = time.perf_counter() - start
    return log
