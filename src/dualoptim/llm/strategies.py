"""Optimizer strategies: how the forget and retain objectives share (or not) an optimizer.

* ``joint``: one AdamW, one loss L_f + L_r per step.
* ``alternate``: one AdamW whose single state sees forget steps and retain steps in turn.
* ``dual``: DualOptim, an AdamW per objective (the LLM setting of the paper).
* ``dual+``: DualOptimPlus, a shared base state plus a residual state per objective.
* ``dual-8bit`` / ``dual+-8bit``: the same with block-wise 8-bit moment states (SPEC §2.4).

Adding a strategy (for example an 8-bit one) is a function decorated with
``@STRATEGIES.register(name)`` that builds the optimizer, plus ``JOINT`` if it optimises the sum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from dualoptim.optim import AdamW8bit, DualOptim, DualOptimPlus
from dualoptim.registry import Registry


@dataclass(frozen=True)
class OptimizerSettings:
    """What every strategy reads: retain lr, forget lr, AdamW betas, eps, weight decay.

    ``plus_betas`` are DualOptim+'s (β_d1, β_d2, β_b1, β_b2).
    """

    lr: float = 1e-5
    forget_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    plus_betas: tuple[float, float, float, float] = (0.9, 0.95, 0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0


BuildFn = Callable[[Iterable[Any], OptimizerSettings], torch.optim.Optimizer]
STRATEGIES: Registry[BuildFn] = Registry("strategy")
#: strategies that step once per iteration on L_f + L_r instead of alternating
JOINT = {"joint"}


@STRATEGIES.register("joint")
def joint(params, s: OptimizerSettings) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay)


@STRATEGIES.register("alternate")
def alternate(params, s: OptimizerSettings) -> torch.optim.Optimizer:
    # one shared state: the baseline DualOptim is measured against
    return torch.optim.AdamW(params, lr=s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay)


@STRATEGIES.register("dual")
def dual(params, s: OptimizerSettings) -> torch.optim.Optimizer:
    adamw = partial(torch.optim.AdamW, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay)
    return DualOptim(params, forget=partial(adamw, lr=s.forget_lr), retain=partial(adamw, lr=s.lr))


@STRATEGIES.register("dual+")
def dual_plus(params, s: OptimizerSettings) -> torch.optim.Optimizer:
    return DualOptimPlus(
        params, lr=s.lr, forget_lr=s.forget_lr, betas=s.plus_betas, eps=s.eps, weight_decay=s.weight_decay
    )


@STRATEGIES.register("dual-8bit")
def dual_8bit(params, s: OptimizerSettings) -> torch.optim.Optimizer:
    adamw = partial(AdamW8bit, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay)
    return DualOptim(params, forget=partial(adamw, lr=s.forget_lr), retain=partial(adamw, lr=s.lr))


@STRATEGIES.register("dual+-8bit")
def dual_plus_8bit(params, s: OptimizerSettings) -> torch.optim.Optimizer:
    return DualOptimPlus(
        params,
        lr=s.lr,
        forget_lr=s.forget_lr,
        betas=s.plus_betas,
        eps=s.eps,
        weight_decay=s.weight_decay,
        quantize_base=True,
        quantize_delta=True,
    )


def build_optimizer(name: str, params: Iterable[Any], settings: OptimizerSettings) -> torch.optim.Optimizer:
    """The optimizer of strategy ``name`` (error listing the valid names when unknown)."""
    return STRATEGIES.get(name)(params, settings)


def is_joint(name: str) -> bool:
    STRATEGIES.get(name)
    return name in JOINT


def set_objective(optimizer: Any, objective: str) -> None:
    """Tell the optimizer which objective the next ``step()`` serves.

    Looks through wrappers (accelerate's ``AcceleratedOptimizer`` keeps the real one in
    ``.optimizer``). Single-state optimizers (joint, alternate) have nothing to switch.
    """
    while not hasattr(optimizer, "set_objective") and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    if hasattr(optimizer, "set_objective"):
        optimizer.set_objective(objective)
