"""DualOptim+: a shared base Adam state plus one residual (delta) state per objective."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from dualoptim.optim import _cpu
from dualoptim.optim._master import MasterWeights, all_params
from dualoptim.optim._objective import Objective, ObjectiveMixin
from dualoptim.optim._params import as_param_groups, check_non_negative, objective_lr
from dualoptim.optim._sharded import init_sharded_moment, local, local_part
from dualoptim.optim.quant import (
    ABSMAX_SUFFIX,
    BLOCK_SIZE,
    LOW_PRECISION,
    chunk_elements,
    code_tables,
    compute_dtype,
    convert_moment,
    encode_moment,
    is_quantized,
    read_moment,
    should_quantize,
    store_moment,
)

__all__ = ["DualOptimPlus", "dual_optim_plus"]


class DualOptimPlus(ObjectiveMixin, Optimizer):
    r"""Shared base moments plus per-objective residual moments (DualOptim+, Adam form).

    When the forget and retain gradients agree a shared optimizer state is best; when they conflict
    decoupled states are. DualOptim+ keeps both: a base state :math:`B` updated by every step, and
    a delta state :math:`\Delta_o` per objective that tracks how that objective's gradient deviates
    from the base. A step for objective :math:`o \in \{f, r\}` with gradient :math:`g`
    (equations (4)-(6) of the paper; the base moves first, the delta measures the residual):

    .. math::
        \theta &\leftarrow \theta\,(1 - \eta_o \lambda) \\
        n &\leftarrow n + 1, \quad k_o \leftarrow k_o + 1 \\
        B_1 &\leftarrow \beta_{b1} B_1 + (1-\beta_{b1})\, g, \qquad \hat B_1 = B_1 / (1-\beta_{b1}^n) \\
        B_2 &\leftarrow \beta_{b2} B_2 + (1-\beta_{b2})\, g^2, \qquad \hat B_2 = B_2 / (1-\beta_{b2}^n) \\
        \Delta_{1,o} &\leftarrow \beta_{d1} \Delta_{1,o} + (1-\beta_{d1})(g - \hat B_1),
            \qquad \hat\Delta_{1,o} = \Delta_{1,o} / (1-\beta_{d1}^{k_o}) \\
        \Delta_{2,o} &\leftarrow \beta_{d2} \Delta_{2,o} + (1-\beta_{d2})(g^2 - \hat B_2),
            \qquad \hat\Delta_{2,o} = \Delta_{2,o} / (1-\beta_{d2}^{k_o}) \\
        m &= \hat B_1 + \hat\Delta_{1,o}, \qquad v = \max(\hat B_2 + \hat\Delta_{2,o},\; m^2) \\
        \theta &\leftarrow \theta - \eta_o\, m / (\sqrt{v} + \epsilon)

    **A beta of exactly 1 means "this state is absent"**: its moment is 0 and has no bias
    correction. So ``betas=(1, 1, b1, b2)`` is one shared AdamW(b1, b2) stepping alternately on
    both objectives, and ``betas=(d1, d2, 1, 1)`` is ``DualOptim`` with an AdamW(d1, d2) per
    objective; both limits hold exactly.

    **Why** :math:`v \ge m^2`: :math:`v` estimates the objective's own second moment as a
    difference of two running averages, and per coordinate it is often negative or near zero (with
    unit Gaussian gradients and a 1:5 schedule it fell to -0.6 within 24 steps). Taking
    :math:`|v|`, as the research code does, lets a coordinate move :math:`10^5\,\eta` in one step
    when gradient scales shift. Since :math:`E[g^2] \ge E[g]^2` for any distribution, flooring
    :math:`v` at :math:`m^2` is the tightest repair that keeps :math:`v` a valid second moment, and
    it bounds every coordinate's step by :math:`\eta_o`, as Adam's is. The floor is applied only
    while both a base and a delta state are present (otherwise :math:`v \ge 0` already and the
    limits above stay exact). With ``eps > 0`` no value is ever non-finite.

    Args:
        params: tensors or param-group dicts (groups may override any option below).
        lr: retain learning rate :math:`\eta_r` (default 1e-5).
        forget_lr: forget learning rate :math:`\eta_f` (default: ``lr``). An LR scheduler on this
            optimizer drives ``lr``; the forget side follows it in proportion,
            :math:`\eta_f \cdot lr / lr_{initial}`.
        betas: :math:`(\beta_{d1}, \beta_{d2}, \beta_{b1}, \beta_{b2})`, delta first/second and base
            first/second moment coefficients in [0, 1] (default (0.9, 0.95, 0.95, 0.999), the
            reference trainer's; its scripts use (0.9, 0.95, 0.9, 0.95)).
        eps: added to :math:`\sqrt{v}` (default 1e-8).
        weight_decay: decoupled weight decay :math:`\lambda` (default 0).
        foreach: use the multi-tensor ``torch._foreach_*`` path (default: True on CPU and CUDA).
        fused: one pass over each tensor. CPU tensors use the compiled C++ loop of
            :mod:`dualoptim.optim._cpu` (built with the system compiler in a few seconds on first
            use, cached on disk; ~3x faster than ``foreach``); where it cannot be built (no
            compiler: :func:`dualoptim.optim.kernel_status` says why), and on CUDA, one
            ``torch.compile``-generated kernel per tensor (Triton on CUDA; compiled once, ~25 s,
            cached by torch). Default None: fused for CUDA parameters when Triton is installed,
            the ``foreach`` path otherwise.
        quantize_base: keep the base moments :math:`B_1, B_2` in block-wise 8 bits
            (:mod:`dualoptim.optim.quant`; signed code for :math:`B_1`, unsigned for :math:`B_2`).
        quantize_delta: keep both objectives' residual moments in 8 bits (signed codes: residuals
            can be negative). With both switches the state takes ~6.1 bytes per parameter
            instead of 24 (AdamW: 8). Tensors under 4,096 elements stay float32. The update
            de-quantises, applies the float32 maths above, re-quantises: on contiguous float32
            CPU tensors in one compiled pass per 256-value block (:mod:`dualoptim.optim._cpu`),
            otherwise (no compiler, CUDA, float64) chunk by chunk in plain torch. A non-finite
            gradient raises ``FloatingPointError`` before any state or parameter of that tensor
            changes.

    State dtype policy: state tensors of float32/float64 parameters share the parameter's dtype;
    bf16/fp16 parameters keep float32 state and, with ``master_weights=True`` (the default), a
    float32 master copy (:mod:`dualoptim.optim._master`) that every update is applied to and that
    is rounded once into the parameter, so updates far below bf16's precision add up as in
    float32; with ``master_weights=False`` the float32 update is rounded into the parameter itself
    each step and small updates are lost. Step counters (``step``) are float32 scalars, as in ``torch.optim.Adam``.
    State layout: ``state[p]["base" | "forget" | "retain"]["step" | "exp_avg" | "exp_avg_sq"]``.

    Example::

        opt = DualOptimPlus(model.parameters(), lr=1e-5, forget_lr=2e-5,
                            betas=(0.9, 0.95, 0.95, 0.999), eps=1e-8, weight_decay=0.0)
        loss_f.backward(); opt.step(objective="forget"); opt.zero_grad()
        loss_r.backward(); opt.step(objective="retain"); opt.zero_grad()
        opt.set_objective("forget"); opt.step()   # for wrappers that call step() with no arguments
    """

    _PICKLED_ATTRIBUTES = ("_objective", "masters")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-5,
        forget_lr: float | None = None,
        betas: tuple[float, float, float, float] = (0.9, 0.95, 0.95, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        quantize_base: bool = False,
        quantize_delta: bool = False,
        master_weights: bool = True,
    ) -> None:
        self.masters = MasterWeights(master_weights)
        defaults = dict(
            lr=lr,
            forget_lr=lr if forget_lr is None else forget_lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            foreach=foreach,
            fused=None if fused is None else bool(fused),
            quantize_base=bool(quantize_base),
            quantize_delta=bool(quantize_delta),
        )
        _validate_hyperparameters(defaults, "DualOptimPlus")
        groups = as_param_groups(params, "DualOptimPlus")
        super().__init__(groups, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Validate the group as it will be before torch appends it: a refused group leaves the
        # optimizer as it was.
        options = {**self.defaults, **param_group}
        if "forget_lr" not in param_group and "lr" in param_group:
            # A group that overrides lr alone means the same rate for both objectives.
            options["forget_lr"] = param_group["lr"]
        _validate_hyperparameters(options, f"DualOptimPlus param group {len(self.param_groups)}")
        params = param_group.get("params")
        if params is not None and not isinstance(params, (Tensor, set)):  # torch refuses sets itself
            params = list(params)  # an iterator is read once, here: torch gets the list
            param_group = {**param_group, "params": params}
        for param in [params] if isinstance(params, Tensor) else params or ():
            if isinstance(param, Tensor) and param.is_sparse:
                raise ValueError("DualOptimPlus does not support sparse parameters")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["forget_lr"] = options["forget_lr"]
        # Schedulers set initial_lr themselves (setdefault); recording it here lets the forget rate
        # follow a scheduler attached later, and a manual change of lr before any scheduler.
        group.setdefault("initial_lr", group["lr"])

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, dict[str, Tensor]]:
        state = self.state[param]
        if not state:
            for part in _PARTS:
                quantized = _is_quantized_part(group, part, param)
                # A float32 step, like torch.optim.Adam, so that bias corrections stay exact.
                state[part] = {"step": torch.tensor(0.0, dtype=torch.float32)}
                for name in _MOMENTS:
                    signed = _signed(part, name)
                    init_sharded_moment(state[part], name, param, quantized, signed)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, objective: str | Objective | None = None):
        """One step of ``objective`` (default: the one given to ``set_objective``)."""
        objective = self._resolve_objective(objective)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with self.masters.swapped(all_params(self.param_groups)):
            self._step(objective)
        return loss

    def _step(self, objective: Objective) -> None:
        for group_index, group in enumerate(self.param_groups):
            params, grads, base, delta, quantized = [], [], [], [], []
            for param_index, param in enumerate(group["params"]):
                if param.grad is None:
                    continue  # a parameter the loss did not reach keeps its value and state
                if param.grad.is_sparse:
                    raise ValueError(
                        f"DualOptimPlus does not support sparse gradients (param {param_index} of group {group_index})"
                    )
                state = self._init_state(param, group)
                if any(is_quantized(state[part], "exp_avg") for part in ("base", objective.value)):
                    quantized.append(
                        (
                            local(param),
                            local(param.grad),
                            local_part(state["base"]),
                            local_part(state[objective.value]),
                            f"param {param_index} of group {group_index}",
                        )
                    )
                    continue
                # FSDP2 shards: the local shards of the parameter, gradient and state (elementwise maths)
                params.append(local(param))
                grads.append(local(param.grad))
                base.append(local_part(state["base"]))
                delta.append(local_part(state[objective.value]))
            for param, grad, base_state, delta_state, label in quantized:
                _quantized_dual_optim_plus(
                    param, grad, base_state, delta_state, delta_part=objective.value, label=label,
                    lr=objective_lr(group, objective),
                    betas=tuple(group["betas"]), eps=group["eps"], weight_decay=group["weight_decay"],
                )  # fmt: skip
            if not params:
                continue
            dual_optim_plus(
                params,
                grads,
                base_steps=[s["step"] for s in base],
                base_exp_avgs=[s["exp_avg"] for s in base],
                base_exp_avg_sqs=[s["exp_avg_sq"] for s in base],
                delta_steps=[s["step"] for s in delta],
                delta_exp_avgs=[s["exp_avg"] for s in delta],
                delta_exp_avg_sqs=[s["exp_avg_sq"] for s in delta],
                lr=objective_lr(group, objective),
                betas=tuple(group["betas"]),
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                foreach=group["foreach"],
                fused=group["fused"],
            )

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus the current objective (``None`` before any ``set_objective``),
        so that a resumed run's ``step()`` without arguments steps the same objective, as with
        :class:`~dualoptim.DualOptim` and :class:`~dualoptim.SharedState`."""
        state_dict = super().state_dict()
        state_dict["objective"] = None if self._objective is None else self._objective.value
        state_dict["master"] = self.masters.state_dict(all_params(self.param_groups))
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore groups, state and objective exactly: state tensors keep their saved dtype
        (float32 state of a bf16 parameter stays float32; torch's default loader would cast it
        to bf16).

        The state representation follows *this* optimizer's ``quantize_*`` switches: a float32
        state loads into an 8-bit optimizer (quantised) and an 8-bit one into a float32 optimizer
        (de-quantised); the saved groups' switches are ignored."""
        if "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"not an optimizer state dict: keys {sorted(state_dict)}")
        objective = state_dict.get("objective")  # absent from state dicts saved before it was kept
        objective = None if objective is None else Objective.parse(objective)
        saved_state = state_dict["state"]
        switches = [(g["quantize_base"], g["quantize_delta"]) for g in self.param_groups]
        self.masters.load_state_dict(state_dict.get("master"), all_params(self.param_groups))
        super().load_state_dict({**state_dict, "state": {}})
        for group, (quantize_base, quantize_delta) in zip(self.param_groups, switches):
            group["quantize_base"], group["quantize_delta"] = quantize_base, quantize_delta
        group_of = {id(p): group for group in self.param_groups for p in group["params"]}
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        param_of = dict(zip(saved_ids, params))
        for key, value in saved_state.items():
            if key not in param_of:
                raise ValueError(f"state for unknown parameter id {key!r}")
            param = param_of[key]
            if not isinstance(value, dict) or set(value) != {"base", "forget", "retain"}:
                raise ValueError(
                    f"not a DualOptimPlus state for parameter {key!r}: expected parts base/forget/retain, "
                    f"got {sorted(value) if isinstance(value, dict) else type(value).__name__}"
                )
            group = group_of[id(param)]
            self.state[param] = {part: _load_part(value[part], param, part, key, group) for part in _PARTS}
        self._objective = objective


_PARTS = ("base", Objective.FORGET.value, Objective.RETAIN.value)
_MOMENTS = ("exp_avg", "exp_avg_sq")


def _signed(part: str, name: str) -> bool:
    """Which 8-bit code a moment uses: only the base second moment is never negative."""
    return not (part == "base" and name == "exp_avg_sq")


def _is_quantized_part(group: dict[str, Any], part: str, param: Tensor) -> bool:
    switch = group["quantize_base"] if part == "base" else group["quantize_delta"]
    return switch and should_quantize(param)


def _load_part(
    saved: dict[str, Tensor], param: Tensor, part: str, key: Any, group: dict[str, Any]
) -> dict[str, Tensor]:
    if "step" not in saved:
        raise ValueError(f"state part {part!r} of parameter {key!r} has no 'step' (keys {sorted(saved)})")
    loaded = {"step": saved["step"].to(dtype=torch.float32).clone()}
    quantized = _is_quantized_part(group, part, param)
    for name in _MOMENTS:
        loaded.update(
            convert_moment(
                # 8-bit moments of a sharded parameter are those of its local shard (optim/_sharded.py)
                saved, name, local(param) if quantized else param, quantized=quantized, signed=_signed(part, name),
                label=f"state {part} of parameter {key!r}",
            )
        )  # fmt: skip
    return loaded


def _quantized_dual_optim_plus(
    param: Tensor, grad: Tensor, base: dict[str, Tensor], delta: dict[str, Tensor], *, delta_part: str,
    label: str, lr: float, betas, eps: float, weight_decay: float,
) -> None:  # fmt: skip
    """One DualOptim+ step for a parameter with (some) 8-bit moments, chunk by chunk: de-quantise,
    apply :func:`_moments` in float32, re-quantise, then update the parameter; or all of it in one
    pass of the compiled CPU kernel (:mod:`dualoptim.optim._cpu`) where it can take the tensors."""
    kernels = _cpu_kernels(param, grad, base, delta)
    if not (kernels.all_finite(grad) if kernels is not None else torch.isfinite(grad).all()):
        raise FloatingPointError(
            f"non-finite gradient in {label}: step refused, its 8-bit state is unchanged"
        )
    beta_delta1, beta_delta2, beta_base1, beta_base2 = betas
    base["step"] += 1
    delta["step"] += 1
    n, k = base["step"].item(), delta["step"].item()
    if kernels is not None:
        scalars = _kernel_scalars(lr, betas, eps, weight_decay, n, k)
        moments = [
            None if not present  # absent (beta == 1): zero, never stored
            else (part[name], part[name + ABSMAX_SUFFIX], code_tables(signed, param.device)) if is_quantized(part, name)
            else part[name]
            for part, name, signed, present in (
                (base, "exp_avg", _signed("base", "exp_avg"), beta_base1 < 1),
                (base, "exp_avg_sq", _signed("base", "exp_avg_sq"), beta_base2 < 1),
                (delta, "exp_avg", _signed(delta_part, "exp_avg"), beta_delta1 < 1),
                (delta, "exp_avg_sq", _signed(delta_part, "exp_avg_sq"), beta_delta2 < 1),
            )
        ]  # fmt: skip
        refused = kernels.quantized_update(param, grad, moments, scalars)
        if refused >= 0:
            raise FloatingPointError(
                f"{label}: a moment overflowed in block {refused} (elements {refused * BLOCK_SIZE}.."
                f"{(refused + 1) * BLOCK_SIZE - 1}); refusing to quantize it, which would turn the whole block into NaN"
            )
        return
    flat_param = param.view(-1) if param.is_contiguous() else param.reshape(-1).clone()
    flat_grad = grad.reshape(-1)
    # (state part, moment, signed code, present). The code comes from _signed, the one rule that
    # _init_state and load_state_dict follow too: a state must be read with the code it was written in.
    moments = [
        (base, "exp_avg", _signed("base", "exp_avg"), beta_base1 < 1),
        (base, "exp_avg_sq", _signed("base", "exp_avg_sq"), beta_base2 < 1),
        (delta, "exp_avg", _signed(delta_part, "exp_avg"), beta_delta1 < 1),
        (delta, "exp_avg_sq", _signed(delta_part, "exp_avg_sq"), beta_delta2 < 1),
    ]
    dtype = compute_dtype(param)
    chunk = chunk_elements(param.device)
    for start in range(0, flat_param.numel(), chunk):
        end = min(start + chunk, flat_param.numel())
        values = [read_moment(part, name, signed, start, end, dtype) for part, name, signed, _ in moments]
        m, v = _moments(flat_grad[start:end].to(dtype), *values, n=n, k=k, betas=betas)
        # Encode every moment before storing any, so that a non-finite block leaves all unchanged.
        encoded = [
            encode_moment(part, name, value, signed, label) if present else None
            for (part, name, signed, present), value in zip(moments, values)
        ]
        for (part, name, _, _), code in zip(moments, encoded):
            if code is not None:
                store_moment(part, name, start, end, code)
        values = flat_param[start:end]
        values.copy_(values.to(dtype).mul_(1 - lr * weight_decay).addcdiv_(m, v.sqrt_().add_(eps), value=-lr))
    if not param.is_contiguous():
        param.copy_(flat_param.view(param.shape))


def _cpu_kernels(
    param: Tensor, grad: Tensor, base: dict[str, Tensor], delta: dict[str, Tensor]
) -> _cpu._Kernels | None:
    """The compiled CPU kernels when they can take this float32 tensor and its state, else None."""
    if param.dtype != torch.float32 or grad.dtype != torch.float32:
        return None
    state = [value for part in (base, delta) for key, value in part.items() if key != "step"]
    if not all(value.dtype in (torch.float32, torch.uint8) for value in state):
        return None
    return _cpu.kernels() if _cpu.usable(param, grad, *state) else None


def _kernel_scalars(lr: float, betas, eps: float, weight_decay: float, n: float, k: float) -> _cpu.KernelScalars:
    """The compiled kernels' scalars: an absent state (beta == 1) gets weight 0 and correction 0."""
    beta_delta1, beta_delta2, beta_base1, beta_base2 = betas
    has_base, has_delta = beta_base1 < 1 or beta_base2 < 1, beta_delta1 < 1 or beta_delta2 < 1
    return _cpu.KernelScalars(
        lr=lr, weight_decay=weight_decay,
        w_b1=1 - beta_base1, w_b2=1 - beta_base2, w_d1=1 - beta_delta1, w_d2=1 - beta_delta2,
        c_b1=1 / (1 - beta_base1**n) if beta_base1 < 1 else 0.0,
        c_b2=1 / (1 - beta_base2**n) if beta_base2 < 1 else 0.0,
        c_d1=1 / (1 - beta_delta1**k) if beta_delta1 < 1 else 0.0,
        c_d2=1 / (1 - beta_delta2**k) if beta_delta2 < 1 else 0.0,
        eps=eps, guard=int(has_base and has_delta),
    )  # fmt: skip


def _validate_hyperparameters(options: dict[str, Any], owner: str) -> None:
    # check_non_negative refuses NaN too (``NaN < 0`` is False: a plain comparison let it through).
    for name in ("lr", "forget_lr"):
        check_non_negative(name, options[name], owner)
    betas = options["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 4:
        raise ValueError(
            f"{owner}: invalid betas {betas!r}, expected 4 values (delta1, delta2, base1, base2)"
        )
    for name, beta in zip(("beta_delta1", "beta_delta2", "beta_base1", "beta_base2"), betas):
        if not isinstance(beta, (int, float)) or not 0.0 <= beta <= 1.0:
            raise ValueError(
                f"{owner}: invalid {name} {beta!r} in betas {tuple(betas)}, expected a value in [0, 1]"
            )
    check_non_negative("eps", options["eps"], owner)
    check_non_negative("weight_decay", options["weight_decay"], owner)


def dual_optim_plus(
    params: list[Tensor],
    grads: list[Tensor],
    *,
    base_steps: list[Tensor],
    base_exp_avgs: list[Tensor],
    base_exp_avg_sqs: list[Tensor],
    delta_steps: list[Tensor],
    delta_exp_avgs: list[Tensor],
    delta_exp_avg_sqs: list[Tensor],
    lr: float,
    betas: tuple[float, float, float, float],
    eps: float,
    weight_decay: float,
    foreach: bool | None = None,
    fused: bool | None = None,
) -> None:
    """Functional DualOptim+ step for one objective (see :class:`DualOptimPlus` for the maths).

    ``delta_*`` are the stepping objective's residual state. Dispatches to the compiled kernel
    when ``fused``, else to the multi-tensor path unless ``foreach=False``; bf16/fp16 parameters
    are updated through float32 copies.
    """
    if foreach is None:
        foreach = all(p.device.type in ("cpu", "cuda") for p in params)
    if fused is None:
        # The compiled kernel is the default where it is cheap to build: CUDA tensors with Triton.
        fused = bool(params) and all(p.is_cuda for p in params) and _triton_available()
    low = [i for i, p in enumerate(params) if p.dtype in LOW_PRECISION]
    work = list(params)
    grads = list(grads)
    for i in low:
        # Compute in float32 against float32 state, round once into the parameter below.
        work[i] = params[i].float()
        grads[i] = grads[i].float()
    if fused:
        step_fn = _fused_dual_optim_plus
    else:
        step_fn = _multi_tensor_dual_optim_plus if foreach else _single_tensor_dual_optim_plus
    step_fn(
        work,
        grads,
        base_steps,
        base_exp_avgs,
        base_exp_avg_sqs,
        delta_steps,
        delta_exp_avgs,
        delta_exp_avg_sqs,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
    )
    for i in low:
        params[i].copy_(work[i])


@functools.cache
def _triton_available() -> bool:
    from torch.utils._triton import has_triton  # torch's own check: Triton imports and a GPU can run it

    return has_triton()


def _single_tensor_dual_optim_plus(
    params, grads, base_steps, base_exp_avgs, base_exp_avg_sqs, delta_steps, delta_exp_avgs, delta_exp_avg_sqs,
    *, lr, betas, eps, weight_decay, count_steps=True,
) -> None:  # fmt: skip
    for i, param in enumerate(params):
        if count_steps:
            base_steps[i] += 1  # n: every step, whatever the objective
            delta_steps[i] += 1  # k_o: this objective's steps
        m, v = _moments(
            grads[i], base_exp_avgs[i], base_exp_avg_sqs[i], delta_exp_avgs[i], delta_exp_avg_sqs[i],
            n=base_steps[i].item(), k=delta_steps[i].item(), betas=betas,
        )  # fmt: skip
        param.mul_(1 - lr * weight_decay)  # decoupled weight decay
        param.addcdiv_(m, v.sqrt_().add_(eps), value=-lr)  # eq. (6)


def _moments(
    grad: Tensor, b1: Tensor, b2: Tensor, d1: Tensor, d2: Tensor, *, n: float, k: float, betas
) -> tuple[Tensor, Tensor]:
    """Update the four moments in place (eqs. 4-5) and return the guarded ``m`` and ``v``."""
    beta_delta1, beta_delta2, beta_base1, beta_base2 = betas
    m = torch.zeros_like(grad)
    v = torch.zeros_like(grad)
    # Beta == 1 means the state is absent: its moment stays 0 and gets no (0/0) bias correction.
    if beta_base1 < 1:  # eq. (4): the base moves first
        b1.lerp_(grad, 1 - beta_base1)
        m.add_(b1, alpha=1 / (1 - beta_base1**n))
    if beta_base2 < 1:
        b2.mul_(beta_base2).addcmul_(grad, grad, value=1 - beta_base2)
        v.add_(b2, alpha=1 / (1 - beta_base2**n))
    if beta_delta1 < 1:  # eq. (5): the residual against the bias-corrected base
        d1.lerp_(grad - m, 1 - beta_delta1)
        m.add_(d1, alpha=1 / (1 - beta_delta1**k))
    if beta_delta2 < 1:
        d2.lerp_(grad * grad - v, 1 - beta_delta2)
        v.add_(d2, alpha=1 / (1 - beta_delta2**k))
    if (beta_base1 < 1 or beta_base2 < 1) and (beta_delta1 < 1 or beta_delta2 < 1):
        torch.maximum(v, m * m, out=v)  # E[g^2] >= E[g]^2: bounds |step| by lr (class docstring)
    return m, v


#: Elements per wave of the multi-tensor path on the CPU. Every tensor is cut into flat chunks and
#: the chunks are processed in waves of about this many elements, so that the ~18 elementwise passes
#: of a step run on data that is still in cache: DRAM then sees each state tensor about once per
#: step. Accelerators gain nothing from it and pay per kernel launch: their waves are huge.
WAVE_ELEMENTS = 1 << 17
ACCELERATOR_WAVE_ELEMENTS = 1 << 28


def _multi_tensor_dual_optim_plus(
    params, grads, base_steps, base_exp_avgs, base_exp_avg_sqs, delta_steps, delta_exp_avgs, delta_exp_avg_sqs,
    *, lr, betas, eps, weight_decay,
) -> None:  # fmt: skip
    beta_delta1, beta_delta2, beta_base1, beta_base2 = betas
    has_base = beta_base1 < 1 or beta_base2 < 1
    has_delta = beta_delta1 < 1 or beta_delta2 < 1
    torch._foreach_add_(base_steps, 1.0)
    torch._foreach_add_(delta_steps, 1.0)
    tensors = (params, grads, base_exp_avgs, base_exp_avg_sqs, delta_exp_avgs, delta_exp_avg_sqs)
    # Bias corrections are scalars per wave: group parameters by (device, dtype, n, k).
    groups: dict[tuple, list[int]] = {}
    for i, param in enumerate(params):
        key = (param.device, param.dtype, base_steps[i].item(), delta_steps[i].item())
        groups.setdefault(key, []).append(i)
    for (device, _, n, k), indices in groups.items():
        flat = [i for i in indices if all(t[i].is_contiguous() for t in tensors)]
        if len(flat) < len(indices):  # strided tensors cannot be cut into flat chunks
            rest = [i for i in indices if i not in flat]
            _single_tensor_dual_optim_plus(
                *([t[i] for i in rest] for t in (params, grads, base_steps, base_exp_avgs, base_exp_avg_sqs,
                                                  delta_steps, delta_exp_avgs, delta_exp_avg_sqs)),
                lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, count_steps=False,
            )  # fmt: skip
        # Bias corrections 1 / (1 - beta^t); 0 marks an absent state (beta == 1).
        c_b1 = 1 / (1 - beta_base1**n) if beta_base1 < 1 else 0.0
        c_b2 = 1 / (1 - beta_base2**n) if beta_base2 < 1 else 0.0
        c_d1 = 1 / (1 - beta_delta1**k) if beta_delta1 < 1 else 0.0
        c_d2 = 1 / (1 - beta_delta2**k) if beta_delta2 < 1 else 0.0
        wave = WAVE_ELEMENTS if device.type == "cpu" else ACCELERATOR_WAVE_ELEMENTS
        wave = min(wave, sum(params[i].numel() for i in flat))
        for p, g, b1, b2, d1, d2 in _waves([[t[i] for i in flat] for t in tensors], wave):
            if weight_decay != 0:
                torch._foreach_mul_(p, 1 - lr * weight_decay)
            g2 = torch._foreach_mul(g, g) if c_b2 or c_d2 else None
            # Base moments first (eq. 4).
            if c_b1:
                torch._foreach_lerp_(b1, g, 1 - beta_base1)
            if c_b2:
                torch._foreach_lerp_(b2, g2, 1 - beta_base2)
            # Residuals against the bias-corrected base (eq. 5), without more temporaries:
            # d1 <- lerp(d1, g, 1 - b) - (1 - b) c_b1 B1, and likewise for the second moment.
            if c_d1:
                torch._foreach_lerp_(d1, g, 1 - beta_delta1)
                if c_b1:
                    torch._foreach_add_(d1, b1, alpha=-(1 - beta_delta1) * c_b1)
            if c_d2:
                torch._foreach_lerp_(d2, g2, 1 - beta_delta2)
                if c_b2:
                    torch._foreach_add_(d2, b2, alpha=-(1 - beta_delta2) * c_b2)
            # m = c_b1 B1 + c_d1 D1, v = c_b2 B2 + c_d2 D2 (eq. 6).
            m = _combine(b1, c_b1, d1, c_d1)
            v = _combine(b2, c_b2, d2, c_d2)
            if has_base and has_delta:
                torch._foreach_maximum_(v, torch._foreach_mul(m, m))
            torch._foreach_sqrt_(v)
            torch._foreach_add_(v, eps)
            torch._foreach_addcdiv_(p, m, v, -lr)


def _combine(base: list[Tensor], c_base: float, delta: list[Tensor], c_delta: float) -> list[Tensor]:
    """New tensors ``c_base * base + c_delta * delta``, skipping absent (c == 0) terms."""
    if c_base:
        out = torch._foreach_mul(base, c_base)
        if c_delta:
            torch._foreach_add_(out, delta, alpha=c_delta)
        return out
    return torch._foreach_mul(delta, c_delta)  # c_delta == 0 too gives the zeros of an absent pair


def _waves(tensor_lists: list[list[Tensor]], wave_elements: int):
    """Cut parallel lists of same-shaped contiguous tensors into flat chunks and yield them in
    waves of at most ``wave_elements`` elements: one list of chunks per input list."""
    wave: list[list[Tensor]] = [[] for _ in tensor_lists]
    size = 0
    for same_shape in zip(*tensor_lists):
        numel = same_shape[0].numel()
        for start in range(0, numel, wave_elements):
            length = min(wave_elements, numel - start)
            if size + length > wave_elements:
                yield wave
                wave, size = [[] for _ in tensor_lists], 0
            for chunks, tensor in zip(wave, same_shape):
                chunks.append(tensor.view(-1)[start : start + length])
            size += length
    if size:
        yield wave


def _fused_dual_optim_plus(
    params, grads, base_steps, base_exp_avgs, base_exp_avg_sqs, delta_steps, delta_exp_avgs, delta_exp_avg_sqs,
    *, lr, betas, eps, weight_decay,
) -> None:  # fmt: skip
    beta_delta1, beta_delta2, beta_base1, beta_base2 = betas
    guard = (beta_base1 < 1 or beta_base2 < 1) and (beta_delta1 < 1 or beta_delta2 < 1)
    torch._foreach_add_(base_steps, 1.0)
    torch._foreach_add_(delta_steps, 1.0)
    scalars_of: dict[tuple, Tensor] = {}
    for i, param in enumerate(params):
        n, k = base_steps[i].item(), delta_steps[i].item()
        tensors = (param, grads[i], base_exp_avgs[i], base_exp_avg_sqs[i], delta_exp_avgs[i], delta_exp_avg_sqs[i])
        if (
            param.dtype in (torch.float32, torch.float64)
            and all(t.dtype == param.dtype for t in tensors)
            and _cpu.usable(*tensors)
        ):
            # CPU tensors: the compiled C++ loop (optim/_cpu.py), one pass, no torch.compile.
            _cpu.kernels().float_update(
                param, grads[i], list(tensors[2:]), _kernel_scalars(lr, betas, eps, weight_decay, n, k)
            )
            continue
        kernel = _compiled_kernel()
        key = (param.device, param.dtype, n, k)
        if key not in scalars_of:
            # Hyper-parameters travel as one tensor so that new values never trigger a recompile.
            # An absent state (beta == 1) gets weight 0 and bias correction 0: it stays 0, unused.
            values = [
                lr, weight_decay,
                1 - beta_base1, 1 - beta_base2, 1 - beta_delta1, 1 - beta_delta2,
                1 / (1 - beta_base1**n) if beta_base1 < 1 else 0.0,
                1 / (1 - beta_base2**n) if beta_base2 < 1 else 0.0,
                1 / (1 - beta_delta1**k) if beta_delta1 < 1 else 0.0,
                1 / (1 - beta_delta2**k) if beta_delta2 < 1 else 0.0,
                eps, float(guard),
            ]  # fmt: skip
            scalars_of[key] = torch.tensor(values, dtype=param.dtype, device=param.device)
        kernel(
            param, grads[i], base_exp_avgs[i], base_exp_avg_sqs[i], delta_exp_avgs[i], delta_exp_avg_sqs[i],
            scalars_of[key],
        )  # fmt: skip


def _dual_optim_plus_kernel(
    param: Tensor, grad: Tensor, b1: Tensor, b2: Tensor, d1: Tensor, d2: Tensor, scalars: Tensor
) -> None:
    """Eqs. (4)-(6) on one tensor, written for ``torch.compile`` to fuse into a single pass."""
    lr, weight_decay, w_b1, w_b2, w_d1, w_d2, c_b1, c_b2, c_d1, c_d2, eps, guard = scalars.unbind()
    param.mul_(1 - lr * weight_decay)
    b1.lerp_(grad, w_b1)
    b2.lerp_(grad * grad, w_b2)
    d1.lerp_(grad - c_b1 * b1, w_d1)
    d2.lerp_(grad * grad - c_b2 * b2, w_d2)
    m = c_b1 * b1 + c_d1 * d1
    v = c_b2 * b2 + c_d2 * d2
    v = torch.where(guard > 0, torch.maximum(v, m * m), v)
    param.sub_(lr * m / (v.sqrt() + eps))


_KERNEL: list[Callable] = []


def _compiled_kernel() -> Callable:
    """The compiled kernel, built on first use (compilation happens at the first call per dtype)."""
    if not _KERNEL:
        _KERNEL.append(torch.compile(_dual_optim_plus_kernel, dynamic=True, fullgraph=True))
    return _KERNEL[0]
