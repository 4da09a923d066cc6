"""DualOptim+ as the reference code steps it (``dual+-ref``): the official numbers' optimizer.

:class:`~dualoptim.DualOptimPlus` is this project's form of DualOptim+ (``docs/design.md`` §2.3).
The official code (CityU-MLO/DualOptimPlus, ``trainer/custom_optimizer_plus.py``,
``adam_decouple_plus_step``, the float32 path with ``decouple_m = decouple_v = True``) steps it
differently; :class:`DualOptimPlusRef` steps it exactly as that function does, so that a user can
reproduce the official numbers and see what the differences do (``docs/design.md`` §2.5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from dualoptim.optim._master import MasterWeights, all_params
from dualoptim.optim._objective import Objective, ObjectiveMixin
from dualoptim.optim._params import as_param_groups, check_non_negative, objective_lr

__all__ = ["DualOptimPlusRef", "dual_optim_plus_ref_update"]

_PARTS = ("base", Objective.FORGET.value, Objective.RETAIN.value)


class DualOptimPlusRef(ObjectiveMixin, Optimizer):
    r"""DualOptim+ stepped as the reference code steps it.

    A step for objective :math:`o` with gradient :math:`g`, base moments :math:`B` and the residual
    moments :math:`\Delta_o` of that objective, :math:`n` counting every step of the parameter and
    :math:`k_o` the steps of :math:`o` (both after this step is counted):

    .. math::
        \theta &\leftarrow \theta\,(1 - \eta_o \lambda) \\
        \hat B_j &= B_j / (1-\beta_{bj}^{\,n-1}) \ \ (n > 1), \qquad \hat B_j = B_j = 0 \ \ (n = 1) \\
        \Delta_{1,o} &\leftarrow \beta_{d1} \Delta_{1,o} + (1-\beta_{d1})(g - \hat B_1), \qquad
        \Delta_{2,o} \leftarrow \beta_{d2} \Delta_{2,o} + (1-\beta_{d2})(g^2 - \hat B_2) \\
        m &= \hat B_1 + \Delta_{1,o} / (1-\beta_{d1}^{k_o}), \qquad
        v = \hat B_2 + \Delta_{2,o} / (1-\beta_{d2}^{k_o}) \\
        \theta &\leftarrow \theta - \eta_o\, m / (\sqrt{|v|} + \epsilon) \\
        B_1 &\leftarrow \beta_{b1} B_1 + (1-\beta_{b1})\, g, \qquad B_2 \leftarrow \beta_{b2} B_2 + (1-\beta_{b2})\, g^2

    Every difference from :class:`~dualoptim.DualOptimPlus` (which follows the paper's equations):

    1. **The base moves after the residuals and the update**, not before: the residual of this step
       is measured against the base of the *previous* steps, and the update's base part does not
       contain the current gradient.
    2. **Its bias correction uses** :math:`n-1` (the steps the base has seen), and at the first step
       the base is zero without correction; DualOptimPlus corrects with :math:`n` after adding
       :math:`g`.
    3. :math:`\sqrt{|v|}` where DualOptimPlus takes :math:`\sqrt{\max(v, m^2)}`: a coordinate
       whose estimated second moment is near zero takes a step far above :math:`\eta_o`.
    4. **No beta may be 1** (the reference refuses it): the limits "beta = 1 means this state is
       absent" of DualOptimPlus do not exist here.
    5. float32 state only; no 8-bit, foreach or fused path (one plain pass per tensor).

    What both share: per-objective residual bias corrections with :math:`k_o`, decoupled weight
    decay at the objective's rate, and the forget rate following a scheduler in proportion
    (the reference's ``lr_ratio_1 = forget_lr / lr``). The reference also exempts biases and norm
    weights from weight decay (Hugging Face's parameter groups); here every parameter of a group
    decays, as in every other strategy of this project.

    Args:
        params: tensors or param-group dicts (groups may override any option below).
        lr: retain learning rate :math:`\eta_r` (default 1e-5).
        forget_lr: forget learning rate :math:`\eta_f` (default: ``lr``).
        betas: :math:`(\beta_{d1}, \beta_{d2}, \beta_{b1}, \beta_{b2})`, each in [0, 1)
            (default (0.9, 0.95, 0.9, 0.95), the reference scripts').
        eps: added to :math:`\sqrt{|v|}` (default 1e-8).
        weight_decay: decoupled weight decay :math:`\lambda` (default 0).
        master_weights: float32 masters of bf16/fp16 parameters (``docs/design.md`` §2.6).

    Example::

        opt = DualOptimPlusRef(model.parameters(), lr=1e-5, forget_lr=1e-5, weight_decay=0.01)
        loss_f.backward(); opt.step(objective="forget"); opt.zero_grad()
        loss_r.backward(); opt.step(objective="retain"); opt.zero_grad()
    """

    _PICKLED_ATTRIBUTES = ("_objective", "masters")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-5,
        forget_lr: float | None = None,
        betas: tuple[float, float, float, float] = (0.9, 0.95, 0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        master_weights: bool = True,
    ) -> None:
        self.masters = MasterWeights(master_weights)
        defaults = dict(
            lr=lr, forget_lr=lr if forget_lr is None else forget_lr, betas=betas, eps=eps, weight_decay=weight_decay
        )
        _validate(defaults, "DualOptimPlusRef")
        super().__init__(as_param_groups(params, "DualOptimPlusRef"), defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        options = {**self.defaults, **param_group}
        if "forget_lr" not in param_group and "lr" in param_group:
            options["forget_lr"] = param_group["lr"]  # a group overriding lr alone: one rate for both
        _validate(options, f"DualOptimPlusRef param group {len(self.param_groups)}")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["forget_lr"] = options["forget_lr"]
        group.setdefault("initial_lr", group["lr"])  # the forget rate follows a scheduler in proportion

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, objective: str | Objective | None = None):
        """One step of ``objective`` (default: the one given to ``set_objective``)."""
        objective = self._resolve_objective(objective)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with self.masters.swapped(all_params(self.param_groups)):
            for group in self.param_groups:
                for param in group["params"]:
                    if param.grad is None:
                        continue  # a parameter the loss did not reach keeps its value and state
                    if param.grad.is_sparse:
                        raise ValueError("DualOptimPlusRef does not support sparse gradients")
                    state = self.state[param]
                    if not state:
                        for part in _PARTS:
                            state[part] = {
                                "step": torch.tensor(0.0, dtype=torch.float32),
                                "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                                "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                            }
                    dual_optim_plus_ref_update(
                        param, param.grad, state["base"], state[objective.value],
                        lr=objective_lr(group, objective), betas=tuple(group["betas"]),
                        eps=group["eps"], weight_decay=group["weight_decay"],
                    )  # fmt: skip
        return loss

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus the current objective and the float32 masters."""
        state_dict = super().state_dict()
        state_dict["objective"] = None if self._objective is None else self._objective.value
        state_dict["master"] = self.masters.state_dict(all_params(self.param_groups))
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore groups, state, masters and objective; the state of a bf16 parameter stays float32
        (loaded while the float32 masters stand in for the parameters)."""
        if "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"not an optimizer state dict: keys {sorted(state_dict)}")
        objective = state_dict.get("objective")
        params = all_params(self.param_groups)
        self.masters.load_state_dict(state_dict.get("master"), params)
        torch_part = {k: v for k, v in state_dict.items() if k not in ("objective", "master")}
        with self.masters.swapped(params, with_grads=False):
            super().load_state_dict(torch_part)
        for param, value in self.state.items():
            if not isinstance(value, dict) or set(value) != set(_PARTS):
                raise ValueError(f"not a DualOptimPlusRef state: parts {sorted(value)}, expected base/forget/retain")
            # torch keeps a saved tensor that already fits: a twin loaded from a live optimizer's
            # state dict would step the other's buffers too
            self.state[param] = {part: {k: t.clone() for k, t in value[part].items()} for part in _PARTS}
        self._objective = None if objective is None else Objective.parse(objective)


def dual_optim_plus_ref_update(
    param: Tensor,
    grad: Tensor,
    base: dict[str, Tensor],
    delta: dict[str, Tensor],
    *,
    lr: float,
    betas: tuple[float, float, float, float],
    eps: float,
    weight_decay: float,
) -> None:
    """One reference DualOptim+ step of one tensor, in place (the equations of :class:`DualOptimPlusRef`)."""
    beta_d1, beta_d2, beta_b1, beta_b2 = betas
    if not torch.isfinite(grad).all():
        raise FloatingPointError("DualOptimPlusRef: non-finite gradient")
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    base["step"] += 1
    delta["step"] += 1
    n, k = int(base["step"].item()), int(delta["step"].item())
    # the base of the steps before this one; at the first step it is zero and left uncorrected
    if n > 1:
        base_m = base["exp_avg"] / (1 - beta_b1 ** (n - 1))
        base_v = base["exp_avg_sq"] / (1 - beta_b2 ** (n - 1))
    else:
        base_m, base_v = base["exp_avg"].clone(), base["exp_avg_sq"].clone()
    delta["exp_avg"].mul_(beta_d1).add_(grad - base_m, alpha=1 - beta_d1)
    delta["exp_avg_sq"].mul_(beta_d2).add_(grad * grad - base_v, alpha=1 - beta_d2)
    m = delta["exp_avg"] / (1 - beta_d1**k) + base_m
    # |v|: the reference's repair of a negative estimate (DualOptimPlus floors v at m^2 instead)
    denom = (delta["exp_avg_sq"] / (1 - beta_d2**k) + base_v).abs().sqrt().add_(eps)
    param.addcdiv_(m, denom, value=-lr)
    # the base moves last
    base["exp_avg"].mul_(beta_b1).add_(grad, alpha=1 - beta_b1)
    base["exp_avg_sq"].mul_(beta_b2).addcmul_(grad, grad, value=1 - beta_b2)


def _validate(options: dict[str, Any], owner: str) -> None:
    for name in ("lr", "forget_lr", "eps", "weight_decay"):
        check_non_negative(name, options[name], owner)
    betas = options["betas"]
    if (
        not isinstance(betas, (tuple, list))
        or len(betas) != 4
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas)
    ):
        raise ValueError(
            f"{owner}: invalid betas {betas!r}, expected 4 values in [0, 1) "
            "(delta first, delta second, base first, base second; the reference refuses 1)"
        )
