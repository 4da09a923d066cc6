"""DualOptim: one optimizer state per objective over the same parameters."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import torch
from torch.optim import Optimizer

from dualoptim.optim._master import MasterWeights, all_params
from dualoptim.optim._objective import Objective, ObjectiveMixin
from dualoptim.optim._params import as_param_groups, check_inner_group_options, load_unaliased

__all__ = ["DualOptim"]

OptimizerFactory = Callable[[Any], Optimizer]

#: Reference forget optimizer of the papers (image classification): AdamW, betas 0.9/0.999,
#: eps 1e-8, decoupled weight decay 0.05. Its learning rate is the one to tune.
DEFAULT_FORGET = partial(torch.optim.AdamW, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
#: Reference retain optimizer: the pre-training optimizer of a ResNet, SGD with momentum.
DEFAULT_RETAIN = partial(torch.optim.SGD, lr=1e-2, momentum=0.9, weight_decay=5e-4)


class DualOptim(ObjectiveMixin, Optimizer):
    r"""Separate optimizer states for the forget and the retain objective.

    Unlearning minimises :math:`L_f(\theta) + L_r(\theta)` by alternating forget steps and retain
    steps. DualOptim keeps two inner optimizers over the same parameters and each step reads and
    writes only the state of its own objective:

    .. math::
        \theta_{t+1} = \begin{cases}
            \mathrm{Forget}(\theta_t, \nabla L_f; s_f) & \text{forget step (state } s_f\text{ only)}\\
            \mathrm{Retain}(\theta_t, \nabla L_r; s_r) & \text{retain step (state } s_r\text{ only)}
        \end{cases}

    With momentum this means :math:`m_{f,t} = \alpha m_{f,t-1} + g_{f,t}` and
    :math:`m_{r,t} = \alpha m_{r,t-1} + g_{r,t}` instead of one buffer mixing both gradients, which
    the DualOptim paper shows lowers the variance of the unlearned parameters. The forget side
    should be adaptive (Adam): forget gradients change magnitude a lot during unlearning. The
    retain side should be the optimizer the model was pre-trained with.

    Args:
        params: tensors or param-group dicts. Each group is handed unchanged to both factories, so
            group options (``lr``, ``weight_decay``, ...) apply to both objectives.
        forget: callable mapping params to a ``torch.optim.Optimizer`` for the forget objective.
            Default :data:`DEFAULT_FORGET`, AdamW(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05).
        retain: the same for the retain objective. Default :data:`DEFAULT_RETAIN`,
            SGD(lr=1e-2, momentum=0.9, weight_decay=5e-4).

    ``param_groups[i]["lr"]`` of this outer optimizer is a multiplier, 1.0 at construction, on
    both objectives' own learning rates: a stock LR scheduler attached to the DualOptim scales
    both objectives; schedulers attached to :attr:`forget` or :attr:`retain` act on one of them.

    bf16/fp16 parameters are stepped through float32 master weights (``master_weights=True``,
    the default; :mod:`dualoptim.optim._master`): the inner optimizers see and update a float32
    copy with float32 state, rounded into the parameter once per step, so updates far below the
    parameter's precision still add up. With ``master_weights=False`` the state dtype follows the
    parameter (torch keeps Adam/SGD state in the parameter's dtype) and small updates are lost.

    Example::

        opt = DualOptim(model.parameters(),
                        forget=partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05),
                        retain=partial(torch.optim.SGD, lr=1e-2, momentum=0.9))
        loss_f.backward(); opt.step(objective="forget"); opt.zero_grad()
        loss_r.backward(); opt.step(objective="retain"); opt.zero_grad()
    """

    _PICKLED_ATTRIBUTES = ("_objective", "forget", "retain", "_inner_ready", "masters")

    def __init__(
        self,
        params: Iterable[Any],
        forget: OptimizerFactory | None = None,
        retain: OptimizerFactory | None = None,
        *,
        master_weights: bool = True,
    ) -> None:
        self.masters = MasterWeights(master_weights)
        groups = as_param_groups(params, "DualOptim")
        for index, group in enumerate(groups):
            _check_group(group, f"DualOptim param group {index}")
        self.forget: Optimizer = _build(forget or DEFAULT_FORGET, groups, "forget")
        self.retain: Optimizer = _build(retain or DEFAULT_RETAIN, groups, "retain")
        self._inner_ready = False
        super().__init__([{"params": g["params"]} for g in groups], defaults={"lr": 1.0})
        self._inner_ready = True

    def inner(self, objective: str | Objective) -> Optimizer:
        """The inner optimizer of ``objective``."""
        return self.forget if Objective.parse(objective) is Objective.FORGET else self.retain

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, objective: str | Objective | None = None):
        """Step the inner optimizer of ``objective`` (default: the one given to ``set_objective``)."""
        inner = self.inner(self._resolve_objective(objective))
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group_index, group in enumerate(self.param_groups):
            for param_index, param in enumerate(group["params"]):
                if param.grad is not None and param.grad.is_sparse:
                    raise ValueError(
                        f"DualOptim does not support sparse gradients (param {param_index} of group {group_index})"
                    )
        with self.masters.swapped(all_params(self.param_groups)), self._scaled_inner_lr(inner):
            inner.step()
        return loss

    @contextlib.contextmanager
    def _scaled_inner_lr(self, inner: Optimizer) -> Iterator[None]:
        """Multiply each inner group's lr by its outer group's lr for the duration of one step."""
        scale_of = {id(p): group["lr"] for group in self.param_groups for p in group["params"]}
        saved = []
        for inner_group in inner.param_groups:
            scales = {scale_of[id(p)] for p in inner_group["params"]}
            if len(scales) > 1:
                raise ValueError(
                    f"an inner param group mixes parameters whose outer lr multipliers differ: {sorted(scales)}"
                )
            scale = scales.pop() if scales else 1.0
            saved.append(inner_group["lr"])
            if scale != 1.0:
                inner_group["lr"] = inner_group["lr"] * scale
        try:
            yield
        finally:
            for inner_group, lr in zip(inner.param_groups, saved):
                inner_group["lr"] = lr

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to both inner optimizers (with its options) and to the outer multipliers."""
        if self._inner_ready:
            (group,) = as_param_groups([param_group], "DualOptim")
            _check_group(group, f"DualOptim param group {len(self.param_groups)}")
            self.forget.add_param_group({**group, "params": list(group["params"])})
            self.retain.add_param_group({**group, "params": list(group["params"])})
            param_group = {"params": group["params"]}
        super().add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        """Outer groups, both inner optimizers' state dicts and the current objective."""
        outer = super().state_dict()
        return {
            "state": {},
            "param_groups": outer["param_groups"],
            "forget": self.forget.state_dict(),
            "retain": self.retain.state_dict(),
            "objective": None if self._objective is None else self._objective.value,
            "master": self.masters.state_dict(all_params(self.param_groups)),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = [key for key in ("param_groups", "forget", "retain") if key not in state_dict]
        if missing:
            raise ValueError(f"not a DualOptim state dict: missing keys {missing}")
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        # Cloning what torch would share: a twin loaded from a live optimizer steps its own buffers.
        params = all_params(self.param_groups)
        self.masters.load_state_dict(state_dict.get("master"), params)
        # loaded against the masters: torch casts float state to the dtype of the parameter it sees
        with self.masters.swapped(params, with_grads=False):
            load_unaliased(self.forget, state_dict["forget"])
            load_unaliased(self.retain, state_dict["retain"])
        objective = state_dict.get("objective")
        self._objective = None if objective is None else Objective.parse(objective)

    def __repr__(self) -> str:
        return f"DualOptim(\n  forget={self.forget!r},\n  retain={self.retain!r}\n)"


def _check_group(group: dict[str, Any], owner: str) -> None:
    # A group's options go to both inner optimizers alike; a per-objective rate would be
    # ignored by torch without a word, so it is refused here.
    if "forget_lr" in group:
        raise ValueError(
            f"{owner}: invalid option forget_lr; a DualOptim group's options apply to both objectives, "
            "set the forget learning rate in the forget= factory"
        )
    check_inner_group_options(group, owner)


def _build(factory: OptimizerFactory, groups: list[dict[str, Any]], side: str) -> Optimizer:
    if not callable(factory):
        raise TypeError(f"DualOptim {side}= must be a callable returning an Optimizer, got {factory!r}")
    try:
        optimizer = factory([{**g, "params": list(g["params"])} for g in groups])
    except ValueError as error:  # torch's messages do not say which of the two optimizers failed
        raise ValueError(f"DualOptim {side}= optimizer rejected its arguments: {error}") from error
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"DualOptim {side}= factory must return a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    # torch lets some invalid values through (SGD: ``lr < 0`` is False for NaN, and group overrides
    # are never checked): the options the inner optimizer will actually use are checked here.
    for index, group in enumerate(optimizer.param_groups):
        check_inner_group_options(group, f"DualOptim {side}= optimizer, param group {index}")
    return optimizer
