"""How the forget and retain objectives are optimised: the one strategy registry of every task.

A strategy turns :class:`OptimizerSettings` into an optimizer whose ``step(objective=...)`` the
task's loop calls for every step, so no loop ever branches on a strategy name
(``docs/design.md`` §1-§2):

- ``joint``: one shared state, one step on :math:`L_r + (\\eta_f/\\eta_r) L_f` with lr
  :math:`\\eta_r` (the loop adds the losses; see :func:`joint_forget_weight`).
- ``alternate``: the papers' Alternate, one shared state (:class:`~dualoptim.SharedState`) stepping
  forget and retain objectives in turn. Its learning rates are the task's papers': on the LLM and
  diffusion tasks ONE rate for both objectives (the reference trainers step one optimizer at
  ``lr``; a different forget rate is an error), on image classification a forget rate of its own
  (the reference's RL/SalUn/SCRUB set ``unlearn_lr`` on the shared SGD for forget steps). The task
  says which through :attr:`OptimizerSettings.two_rate_alternate` (``docs/design.md`` §2.5).
- ``alternate-2lr``: the same shared state with its own forget rate on every task: the stronger
  baseline, named apart from the papers' Alternate on the LLM tasks.
- ``dual``: :class:`~dualoptim.DualOptim`, Adam(W) for the forget objective and the task's
  pre-training optimizer for the retain objective, each with its own state.
- ``dual+``: :class:`~dualoptim.DualOptimPlus`, a shared base Adam state plus per-objective residuals.
- ``dual+-ref``: :class:`~dualoptim.DualOptimPlusRef`, DualOptim+ as the reference code steps it
  (base moved after the residuals, its bias corrections, :math:`|v|`): the official numbers' optimizer.
- ``dual-8bit``, ``dual+-8bit``: the same with block-wise 8-bit Adam moments.

A task chooses its optimizer family through :attr:`OptimizerSettings.family`: ``sgd`` for image
classifiers (SGD with momentum, as they are pre-trained), ``adamw`` for LLMs, ``adam`` for
diffusion models. To add a strategy, register a builder ``(params, settings) -> Optimizer`` with
``@register_strategy(name, description=...)``; the test suite then runs it on every task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch.optim import Optimizer

from dualoptim.optim import AdamW8bit, DualOptim, DualOptimPlus, DualOptimPlusRef, SharedState
from dualoptim.registry import Registry

__all__ = [
    "FAMILIES",
    "STRATEGIES",
    "OptimizerSettings",
    "Strategy",
    "build_optimizer",
    "check_strategy",
    "joint_forget_weight",
    "register_strategy",
    "set_objective",
    "settings_key",
    "uses_single_rate",
]

#: optimizer families a task may pre-train with: the retain side of ``dual`` and the single state
#: of ``joint``/``alternate`` use it; the forget side of ``dual`` is always adaptive.
FAMILIES = ("sgd", "adamw", "adam")


@dataclass(frozen=True)
class OptimizerSettings:
    """Everything a strategy needs to build its optimizer, for any task.

    Defaults are the papers' image-classification settings (``docs/design.md`` §2.2).
    """

    forget_lr: float
    retain_lr: float
    #: the task's pre-training optimizer: sgd | adamw | adam
    family: str = "sgd"
    #: SGD momentum (family sgd)
    momentum: float = 0.9
    #: Adam(W) betas of the retain side and of the shared state (families adamw, adam)
    betas: tuple[float, float] = (0.9, 0.999)
    #: weight decay of the retain side and of the shared state (SGD: L2; AdamW: decoupled)
    weight_decay: float = 5e-4
    #: Adam(W) betas of the forget side of dual
    forget_betas: tuple[float, float] = (0.9, 0.999)
    #: weight decay of the forget side of dual (AdamW: decoupled; Adam: L2)
    forget_weight_decay: float = 0.05
    eps: float = 1e-8
    #: DualOptimPlus betas (delta first, delta second, base first, base second)
    plus_betas: tuple[float, float, float, float] = (0.9, 0.95, 0.9, 0.95)
    plus_weight_decay: float = 0.0
    #: whether the task's papers give ``alternate`` a forget rate of its own: True on image
    #: classification (the reference's RL/SalUn/SCRUB), False on the LLM and diffusion tasks, whose
    #: reference trainers step one optimizer at one rate (then forget_lr must equal retain_lr)
    two_rate_alternate: bool = True

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown optimizer family {self.family!r}; valid: {', '.join(FAMILIES)}")
        for name in ("forget_lr", "retain_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")


def settings_key(settings: OptimizerSettings) -> dict[str, Any]:
    """The fields of ``settings`` that enter a run key.

    ``two_rate_alternate`` is left out: it is the task's rule, fixed per task, not a setting of one
    run (on a task whose ``alternate`` has one rate, a run with two rates is refused before it
    starts), and leaving it out keeps the records written before the field existed valid.
    """
    key = asdict(settings)
    del key["two_rate_alternate"]
    return key


@dataclass(frozen=True)
class Strategy:
    """A named way to build the unlearning optimizer."""

    name: str
    build: Callable[[list[torch.nn.Parameter], OptimizerSettings], Optimizer]
    #: steps once on L_f + L_r instead of alternating forget and retain steps
    joint: bool = False
    #: a strategy without learning rates of its own in a config uses this one's (8-bit variants
    #: reuse the rates tuned for their float32 twin)
    rates_from: str | None = None
    description: str = ""
    #: one learning rate for both objectives where the task's papers give it one
    #: (``OptimizerSettings.two_rate_alternate`` False): the rate tuned is then that one rate
    single_rate: bool = False


STRATEGIES = Registry[Strategy]("strategy")


def register_strategy(
    name: str, *, description: str, joint: bool = False, rates_from: str | None = None, single_rate: bool = False
) -> Callable:
    """Decorator registering an optimizer builder ``(params, settings) -> Optimizer`` as a strategy."""

    def decorator(build: Callable) -> Callable:
        STRATEGIES.register(name)(Strategy(name, build, joint, rates_from, description, single_rate))
        return build

    return decorator


def build_optimizer(name: str, params: Iterable[Any], settings: OptimizerSettings) -> Optimizer:
    """The optimizer of strategy ``name`` over ``params`` (an error listing the valid names when unknown)."""
    return STRATEGIES.get(name).build(list(params), settings)


def check_strategy(name: str, settings: OptimizerSettings) -> None:
    """Build strategy ``name`` once on a one-element probe: what only its builder refuses (an 8-bit
    adam family with weight decay, a bad beta) fails before any model is trained."""
    build_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], settings)


def uses_single_rate(name: str, settings: OptimizerSettings) -> bool:
    """Whether strategy ``name`` steps both objectives at one rate under ``settings`` (the papers'
    Alternate of an LLM or diffusion task): its forget rate is then its retain rate."""
    return STRATEGIES.get(name).single_rate and not settings.two_rate_alternate


def joint_forget_weight(settings: OptimizerSettings) -> float:
    r"""Weight of :math:`L_f` in a joint step, :math:`\eta_f / \eta_r`.

    A joint step sums both objectives and is taken with the retain learning rate, so scaling the
    forget gradient by :math:`\eta_f/\eta_r` makes it honour both rates: with SGD the step is
    exactly :math:`\eta_f g_f + \eta_r g_r`; with equal rates it is the plain sum of the papers.
    """
    return settings.forget_lr / settings.retain_lr


def set_objective(optimizer: Any, objective: str) -> None:
    """Tell ``optimizer`` which objective its next ``step()`` serves.

    Looks through wrappers (accelerate's ``AcceleratedOptimizer`` keeps the real one in ``.optimizer``).
    """
    while not hasattr(optimizer, "set_objective") and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    if not hasattr(optimizer, "set_objective"):
        raise TypeError(f"{type(optimizer).__name__} has no set_objective: not a strategy's optimizer")
    optimizer.set_objective(objective)


# -- builders ------------------------------------------------------------------------------------


def _check_8bit_adam(settings: OptimizerSettings) -> None:
    # AdamW8bit decays weights decoupled; Adam's weight decay is an L2 term of the gradient. With
    # weight decay the 8-bit twin of an Adam-family optimizer would be another algorithm.
    if settings.family == "adam" and (settings.weight_decay or settings.forget_weight_decay):
        raise ValueError(
            "8-bit strategies of the adam family need weight_decay = forget_weight_decay = 0 (AdamW8bit's "
            f"decay is decoupled, Adam's is L2), got {settings.weight_decay} and {settings.forget_weight_decay}"
        )


def _retain_factory(settings: OptimizerSettings, quantized: bool = False) -> Callable[[Any], Optimizer]:
    """The pre-training optimizer of the task (its lr is set by the caller or by SharedState)."""
    s = settings
    if quantized:
        _check_8bit_adam(s)
    if s.family == "sgd":
        # There is no 8-bit SGD momentum: the 8-bit rows of the papers quantise Adam states only.
        return partial(torch.optim.SGD, lr=s.retain_lr, momentum=s.momentum, weight_decay=s.weight_decay)
    adam = AdamW8bit if quantized else (torch.optim.AdamW if s.family == "adamw" else torch.optim.Adam)
    return partial(adam, lr=s.retain_lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay)


def _forget_factory(settings: OptimizerSettings, quantized: bool = False) -> Callable[[Any], Optimizer]:
    """Adaptive for forgetting: AdamW (Adam for the adam family), 8-bit on request."""
    s = settings
    if quantized:
        _check_8bit_adam(s)
    adam = AdamW8bit if quantized else (torch.optim.Adam if s.family == "adam" else torch.optim.AdamW)
    return partial(adam, lr=s.forget_lr, betas=s.forget_betas, eps=s.eps, weight_decay=s.forget_weight_decay)


def _shared(params: list, settings: OptimizerSettings) -> Optimizer:
    return SharedState(params, _retain_factory(settings), lr=settings.retain_lr, forget_lr=settings.forget_lr)


def _dual(params: list, settings: OptimizerSettings, quantized: bool) -> Optimizer:
    return DualOptim(
        params, forget=_forget_factory(settings, quantized), retain=_retain_factory(settings, quantized)
    )


def _plus_arguments(settings: OptimizerSettings) -> dict[str, Any]:
    """The arguments both forms of DualOptim+ (the project's and the reference's) take from settings."""
    return {"lr": settings.retain_lr, "forget_lr": settings.forget_lr, "betas": settings.plus_betas,
            "eps": settings.eps, "weight_decay": settings.plus_weight_decay}  # fmt: skip


def _dual_plus(params: list, settings: OptimizerSettings, quantized: bool) -> Optimizer:
    return DualOptimPlus(params, **_plus_arguments(settings), quantize_base=quantized, quantize_delta=quantized)


@register_strategy(
    "joint", joint=True, description="one shared state, one step on L_r + (forget_lr/lr) L_f per iteration"
)
def joint(params: list, settings: OptimizerSettings) -> Optimizer:
    return _shared(params, settings)


@register_strategy(
    "alternate",
    single_rate=True,
    description="the papers' Alternate: one shared state stepping forget and retain in turn "
    "(LLM, diffusion: one learning rate for both; image classification: a forget rate of its own)",
)
def alternate(params: list, settings: OptimizerSettings) -> Optimizer:
    if not settings.two_rate_alternate and settings.forget_lr != settings.retain_lr:
        raise ValueError(
            f"alternate steps both objectives at one learning rate (the papers' Alternate), got forget_lr="
            f"{settings.forget_lr} != lr={settings.retain_lr}; for a separate forget rate use alternate-2lr"
        )
    return _shared(params, settings)


@register_strategy(
    "alternate-2lr", description="one shared state stepping forget and retain in turn, a learning rate each"
)
def alternate_2lr(params: list, settings: OptimizerSettings) -> Optimizer:
    return _shared(params, settings)


@register_strategy(
    "dual", description="DualOptim: Adam(W) state for forget, the pre-training optimizer's for retain"
)
def dual(params: list, settings: OptimizerSettings) -> Optimizer:
    return _dual(params, settings, quantized=False)


@register_strategy("dual+", description="DualOptim+: a shared base Adam state plus a residual state per objective")
def dual_plus(params: list, settings: OptimizerSettings) -> Optimizer:
    return _dual_plus(params, settings, quantized=False)


@register_strategy(
    "dual+-ref",
    rates_from="dual+",
    description="DualOptim+ as the reference code steps it: base moved after the residuals, its bias "
    "corrections, sqrt(|v|)",
)
def dual_plus_ref(params: list, settings: OptimizerSettings) -> Optimizer:
    return DualOptimPlusRef(params, **_plus_arguments(settings))


@register_strategy(
    "dual-8bit", rates_from="dual", description="dual with block-wise 8-bit Adam moments (SGD momentum stays float32)"
)
def dual_8bit(params: list, settings: OptimizerSettings) -> Optimizer:
    return _dual(params, settings, quantized=True)


@register_strategy("dual+-8bit", rates_from="dual+", description="dual+ with block-wise 8-bit base and residual moments")
def dual_plus_8bit(params: list, settings: OptimizerSettings) -> Optimizer:
    return _dual_plus(params, settings, quantized=True)
