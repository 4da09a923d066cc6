"""How the forget and retain objectives are optimised: ``joint``, ``alternate``, ``dual``, ``dual+``.

This file is the one place where a strategy name becomes an optimizer. Every strategy returns an
optimizer with ``step(objective=...)``, so the unlearning loop treats them all alike:

- ``joint``: one SGD with momentum, one step on :math:`L_f + L_r` (the loop adds the losses).
- ``alternate``: the same single SGD (one shared momentum buffer) stepping forget and retain
  objectives in turn, each with its own learning rate: the methods' published optimizer.
- ``dual``: :class:`~dualoptim.DualOptim`, AdamW for the forget objective and SGD with momentum
  (the pre-training optimizer) for the retain objective, each with its own state.
- ``dual+``: :class:`~dualoptim.DualOptimPlus`, a shared base Adam state plus per-objective residuals.

To add a strategy, register a builder: ``@register_strategy("name")`` on a function
``(params, settings) -> Optimizer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch.optim import Optimizer

from dualoptim.optim import AdamW8bit, DualOptim, DualOptimPlus, Objective, ObjectiveMixin
from dualoptim.registry import Registry

__all__ = [
    "STRATEGIES",
    "OptimizerSettings",
    "SharedState",
    "Strategy",
    "build_optimizer",
    "register_strategy",
]


@dataclass(frozen=True)
class OptimizerSettings:
    """Everything a strategy needs to build its optimizer (the papers' image-classification settings)."""

    forget_lr: float
    retain_lr: float
    #: SGD (joint, alternate, and the retain side of dual)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    #: AdamW forget side of dual
    forget_betas: tuple[float, float] = (0.9, 0.999)
    forget_weight_decay: float = 0.05
    eps: float = 1e-8
    #: DualOptimPlus (delta first, delta second, base first, base second)
    plus_betas: tuple[float, float, float, float] = (0.9, 0.95, 0.9, 0.95)
    plus_weight_decay: float = 0.0


@dataclass(frozen=True)
class Strategy:
    """A named way to build the unlearning optimizer; ``joint`` strategies step once on L_f + L_r."""

    name: str
    build: Callable[[list[torch.nn.Parameter], OptimizerSettings], Optimizer]
    joint: bool = False
    #: A strategy without learning rates of its own in a config uses this one's (8-bit variants
    #: reuse the rates tuned for their float32 twin).
    rates_from: str | None = None


STRATEGIES = Registry[Strategy]("strategy")


def register_strategy(name: str, *, joint: bool = False, rates_from: str | None = None) -> Callable:
    """Decorator registering an optimizer builder ``(params, settings) -> Optimizer`` as a strategy."""

    def decorator(build: Callable) -> Callable:
        STRATEGIES.register(name)(Strategy(name, build, joint, rates_from))
        return build

    return decorator


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], settings: OptimizerSettings
) -> Optimizer:
    """The optimizer of strategy ``name`` over ``params``."""
    return STRATEGIES.get(name).build(list(params), settings)


class SharedState(ObjectiveMixin, Optimizer):
    """One inner optimizer, hence one shared state, for both objectives; each step uses its objective's lr.

    ``param_groups[0]["lr"]`` is a multiplier (1.0 at construction) on both learning rates, as in
    :class:`~dualoptim.DualOptim`, so the same LR scheduler works for every strategy.
    """

    def __init__(
        self, params: Iterable[Any], optimizer: Callable[[Any], Optimizer], forget_lr: float, retain_lr: float
    ):
        params = list(params)
        for name, lr in (("forget_lr", forget_lr), ("retain_lr", retain_lr)):
            if not lr >= 0.0:
                raise ValueError(f"invalid {name}: {lr}")
        self.inner = optimizer(params)
        self.lrs = {Objective.FORGET: forget_lr, Objective.RETAIN: retain_lr}
        super().__init__([{"params": params}], defaults={"lr": 1.0})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, objective: str | Objective | None = None):
        lr = self.lrs[self._resolve_objective(objective)] * self.param_groups[0]["lr"]
        for group in self.inner.param_groups:
            group["lr"] = lr
        with torch.enable_grad():
            return self.inner.step(closure)

    def state_dict(self) -> dict[str, Any]:
        return {
            "state": {},
            "param_groups": super().state_dict()["param_groups"],
            "inner": self.inner.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        self.inner.load_state_dict(state_dict["inner"])


def _sgd(settings: OptimizerSettings, lr: float) -> Callable[[Any], Optimizer]:
    return partial(torch.optim.SGD, lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


@register_strategy("joint", joint=True)
def joint(params: list, settings: OptimizerSettings) -> Optimizer:
    # A joint step is stepped as the retain objective, so its single lr is the retain lr.
    return SharedState(params, _sgd(settings, settings.retain_lr), settings.forget_lr, settings.retain_lr)


@register_strategy("alternate")
def alternate(params: list, settings: OptimizerSettings) -> Optimizer:
    return SharedState(params, _sgd(settings, settings.retain_lr), settings.forget_lr, settings.retain_lr)


def _dual(params: list, settings: OptimizerSettings, forget_optimizer: Callable[..., Optimizer]) -> Optimizer:
    forget = partial(
        forget_optimizer,
        lr=settings.forget_lr,
        betas=settings.forget_betas,
        eps=settings.eps,
        weight_decay=settings.forget_weight_decay,
    )
    return DualOptim(params, forget=forget, retain=_sgd(settings, settings.retain_lr))


def _dual_plus(params: list, settings: OptimizerSettings, quantize: bool) -> Optimizer:
    return DualOptimPlus(
        params,
        lr=settings.retain_lr,
        forget_lr=settings.forget_lr,
        betas=settings.plus_betas,
        eps=settings.eps,
        weight_decay=settings.plus_weight_decay,
        quantize_base=quantize,
        quantize_delta=quantize,
    )


@register_strategy("dual")
def dual(params: list, settings: OptimizerSettings) -> Optimizer:
    return _dual(params, settings, torch.optim.AdamW)


@register_strategy("dual+")
def dual_plus(params: list, settings: OptimizerSettings) -> Optimizer:
    return _dual_plus(params, settings, quantize=False)


@register_strategy("dual-8bit", rates_from="dual")
def dual_8bit(params: list, settings: OptimizerSettings) -> Optimizer:
    # The forget side's Adam moments in 8 bits; the retain side is SGD, whose single momentum
    # buffer stays float32 (the 8-bit rows of the papers quantise Adam states).
    return _dual(params, settings, AdamW8bit)


@register_strategy("dual+-8bit", rates_from="dual+")
def dual_plus_8bit(params: list, settings: OptimizerSettings) -> Optimizer:
    return _dual_plus(params, settings, quantize=True)
