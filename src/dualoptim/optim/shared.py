"""SharedState: one optimizer state for both objectives, a learning rate per objective (``alternate``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from torch.optim import Optimizer

from dualoptim.optim._master import MasterWeights, all_params
from dualoptim.optim._objective import Objective, ObjectiveMixin
from dualoptim.optim._params import (
    as_param_groups,
    check_inner_group_options,
    check_non_negative,
    load_unaliased,
    objective_lr,
)

__all__ = ["SharedState"]

OptimizerFactory = Callable[[Any], Optimizer]

#: The pre-training optimizer of an image classifier: SGD with momentum 0.9, weight decay 5e-4.
DEFAULT_OPTIMIZER = partial(torch.optim.SGD, lr=1e-2, momentum=0.9, weight_decay=5e-4)

#: Options of the outer groups that are not handed to the inner optimizer.
_OUTER_KEYS = ("lr", "forget_lr", "initial_lr")


class SharedState(ObjectiveMixin, Optimizer):
    r"""One inner optimizer, hence one state, stepping both objectives, each with its own learning rate.

    The baseline every DualOptim comparison needs (the ``alternate`` strategy): forget and retain
    steps alternate over a single state :math:`s`,

    .. math::
        \theta_{t+1} = \mathrm{Inner}(\theta_t, \nabla L_o;\ s,\ \eta_o), \qquad o \in \{f, r\},

    so with momentum :math:`m_{f,t} = \alpha m_{r,t-1} + g_{f,t}` and
    :math:`m_{r,t} = \alpha m_{f,t} + g_{r,t}`: the mixing of statistics that DualOptim removes.
    Only the learning rate differs between the objectives.

    Args:
        params: tensors or param-group dicts; a group may set its own ``lr`` and ``forget_lr`` and
            any option of the inner optimizer (``weight_decay``, ``momentum``, ...).
        optimizer: callable mapping param groups to the inner ``torch.optim.Optimizer`` (default
            SGD with momentum 0.9 and weight decay 5e-4). Its own ``lr`` is replaced at every step.
        lr: retain learning rate :math:`\eta_r` (default 1e-2).
        forget_lr: forget learning rate :math:`\eta_f` (default: ``lr``).

    A stock LR scheduler on this optimizer drives ``lr``; the forget rate follows in proportion,
    :math:`\eta_f \cdot lr / lr_{initial}`, exactly as in :class:`~dualoptim.DualOptimPlus`.
    bf16/fp16 parameters are stepped through float32 master weights (``master_weights=True``,
    the default), as in :class:`~dualoptim.DualOptim`.

    Example::

        opt = SharedState(model.parameters(), partial(torch.optim.SGD, momentum=0.9), lr=1e-2, forget_lr=1e-3)
        loss_f.backward(); opt.step(objective="forget"); opt.zero_grad()
        loss_r.backward(); opt.step(objective="retain"); opt.zero_grad()
    """

    _PICKLED_ATTRIBUTES = ("_objective", "inner", "_inner_ready", "masters")

    def __init__(
        self,
        params: Iterable[Any],
        optimizer: OptimizerFactory | None = None,
        lr: float = 1e-2,
        forget_lr: float | None = None,
        *,
        master_weights: bool = True,
    ) -> None:
        self.masters = MasterWeights(master_weights)
        forget_lr = lr if forget_lr is None else forget_lr
        for name, value in (("lr", lr), ("forget_lr", forget_lr)):
            check_non_negative(name, value, "SharedState")
        factory = optimizer or DEFAULT_OPTIMIZER
        if not callable(factory):
            raise TypeError(
                f"SharedState optimizer= must be a callable returning an Optimizer, got {factory!r}"
            )
        groups = as_param_groups(params, "SharedState")
        for index, group in enumerate(groups):
            _check_group(group, index)
        try:
            self.inner: Optimizer = factory([_inner_group(g) for g in groups])
        except ValueError as error:  # say whose arguments torch refused
            raise ValueError(f"SharedState optimizer= rejected its arguments: {error}") from error
        if not isinstance(self.inner, Optimizer):
            raise TypeError(
                f"SharedState optimizer= factory must return a torch.optim.Optimizer, got {type(self.inner).__name__}"
            )
        # torch lets some invalid values through (SGD: ``weight_decay < 0`` is False for NaN); the
        # inner lr is replaced at every step, so it is not checked.
        for index, group in enumerate(self.inner.param_groups):
            options = {k: v for k, v in group.items() if k != "lr"}
            check_inner_group_options(options, f"SharedState optimizer=, param group {index}")
        self._inner_ready = False
        super().__init__([_outer_group(g) for g in groups], defaults={"lr": lr, "forget_lr": forget_lr})
        self._inner_ready = True

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the outer learning rates and, with its other options, to the inner optimizer."""
        if self._inner_ready:
            # Validate before the inner or the outer optimizer takes the group, so that a refused
            # group leaves both as they were.
            (group,) = as_param_groups([param_group], "SharedState")
            _check_group(group, len(self.param_groups))
            self.inner.add_param_group(_inner_group(group))
            param_group = _outer_group(group)
        # Read before torch's add_param_group, which fills the defaults into this very dict.
        lr_alone = "forget_lr" not in param_group and "lr" in param_group
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if lr_alone:
            group["forget_lr"] = group["lr"]  # a group overriding lr alone: one rate for both
        group.setdefault("initial_lr", group["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, objective: str | Objective | None = None):
        """Step the shared inner optimizer with the learning rate of ``objective``."""
        objective = self._resolve_objective(objective)
        for outer, inner in zip(self.param_groups, self.inner.param_groups):
            inner["lr"] = objective_lr(outer, objective)
        loss = None
        if closure is not None:  # evaluated before the masters are swapped in: on the model as it is
            with torch.enable_grad():
                loss = closure()
        with self.masters.swapped(all_params(self.param_groups)):
            self.inner.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """Outer groups (the two learning rates), the inner optimizer's state dict, the current objective."""
        return {
            "state": {},
            "param_groups": super().state_dict()["param_groups"],
            "inner": self.inner.state_dict(),
            "objective": None if self._objective is None else self._objective.value,
            "master": self.masters.state_dict(all_params(self.param_groups)),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = [key for key in ("param_groups", "inner") if key not in state_dict]
        if missing:
            raise ValueError(f"not a SharedState state dict: missing keys {missing}")
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        params = all_params(self.param_groups)
        self.masters.load_state_dict(state_dict.get("master"), params)
        with self.masters.swapped(params, with_grads=False):  # float state stays float32 (see DualOptim)
            load_unaliased(self.inner, state_dict["inner"])  # a twin loaded from a live one steps its own buffers
        objective = state_dict.get("objective")
        self._objective = None if objective is None else Objective.parse(objective)

    def __repr__(self) -> str:
        rates = ", ".join(f"lr={g['lr']}, forget_lr={g['forget_lr']}" for g in self.param_groups)
        return f"SharedState({rates},\n  inner={self.inner!r}\n)"


def _check_group(group: dict[str, Any], index: int) -> None:
    """The outer rates a group overrides and the common options it passes to the inner optimizer."""
    owner = f"SharedState param group {index}"
    for name in ("lr", "forget_lr"):
        if name in group:
            check_non_negative(name, group[name], owner)
    check_inner_group_options(_inner_group(group), owner)


def _inner_group(group: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if k == "params" else v) for k, v in group.items() if k not in _OUTER_KEYS}


def _outer_group(group: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k == "params" or k in _OUTER_KEYS}
