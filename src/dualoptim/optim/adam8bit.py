"""AdamW with block-wise 8-bit moments: the forget (and LLM retain) side of DualOptim 8bit."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from dualoptim.optim import _cpu
from dualoptim.optim._master import MasterWeights, all_params
from dualoptim.optim._params import as_param_groups, check_non_negative
from dualoptim.optim._sharded import init_sharded_moment, local, local_part
from dualoptim.optim.quant import (
    ABSMAX_SUFFIX,
    BLOCK_SIZE,
    Quantized,
    chunk_elements,
    code_tables,
    compute_dtype,
    convert_moment,
    dequantize,
    encode_moment,
    is_quantized,
    read_moment,
    should_quantize,
    store_moment,
)

__all__ = ["AdamW8bit", "float_state_dict"]

_MOMENTS = (("exp_avg", True), ("exp_avg_sq", False))  # (name, signed code)


class AdamW8bit(Optimizer):
    r"""AdamW whose moments are stored in block-wise 8 bits (:mod:`dualoptim.optim.quant`).

    .. math::
        \theta &\leftarrow \theta (1 - \eta\lambda), \quad
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        \hat m &= m / (1-\beta_1^t), \quad \hat v = \max(v / (1-\beta_2^t),\ \hat m^2), \quad
        \theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)

    :math:`m` uses the signed dynamic code and :math:`v` the unsigned one; tensors under 4,096
    elements keep float32 moments and are plain AdamW. For 8-bit tensors :math:`\hat v` is floored
    at :math:`\hat m^2` because the two moments are quantised against different block maxima:
    :math:`v` (which spans the square of :math:`m`'s range) underflows to 0 first, and
    :math:`\hat m / \epsilon` would then be an enormous step. Exact AdamW has
    :math:`\hat v \approx \hat m^2` at most in practice, so the floor changes nothing else.
    State: ~2.03 bytes per parameter against AdamW's 8. Contiguous float32 CPU tensors step in
    one compiled pass (:mod:`dualoptim.optim._cpu`; the pure-torch path where no compiler is,
    :func:`dualoptim.optim.kernel_status` says which). A non-finite gradient raises
    ``FloatingPointError`` before that tensor's state or value changes.

    Example::

        opt = DualOptim(model.parameters(), forget=partial(AdamW8bit, lr=1e-4, weight_decay=0.05),
                        retain=partial(torch.optim.SGD, lr=1e-2, momentum=0.9))

    bf16/fp16 parameters are stepped through float32 master weights (``master_weights=True``,
    the default; :mod:`dualoptim.optim._master`), saved in the state dict under ``"master"``.

    ``load_state_dict`` accepts torch ``AdamW`` states (quantising them); :func:`float_state_dict`
    turns an ``AdamW8bit`` state dict into one that ``torch.optim.AdamW`` loads.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        master_weights: bool = True,
    ) -> None:
        self.masters = MasterWeights(master_weights)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        _validate_options(defaults, "AdamW8bit")
        defaults["betas"] = tuple(betas)
        super().__init__(as_param_groups(params, "AdamW8bit"), defaults)

    def __getstate__(self) -> dict[str, Any]:
        # torch keeps only defaults, state and param_groups: a copy or a pickle keeps the masters too
        return {**super().__getstate__(), "masters": self.masters}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, validating the options it overrides first (torch checks only the defaults)."""
        _validate_options({**self.defaults, **param_group}, f"AdamW8bit param group {len(self.param_groups)}")
        super().add_param_group(param_group)

    def _init_state(self, param: Tensor) -> dict[str, Tensor]:
        state = self.state[param]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            for name, signed in _MOMENTS:
                init_sharded_moment(state, name, param, should_quantize(param), signed)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with self.masters.swapped(all_params(self.param_groups)):
            self._step()
        return loss

    def _step(self) -> None:
        for group_index, group in enumerate(self.param_groups):
            for param_index, param in enumerate(group["params"]):
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise ValueError(
                        f"AdamW8bit does not support sparse gradients (param {param_index} of group {group_index})"
                    )
                label = f"param {param_index} of group {group_index}"
                # FSDP2 shards: the local shards of the parameter, gradient and state (elementwise maths)
                _adamw_step(local(param), local(param.grad), local_part(self._init_state(param)), group, label)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus the float32 master weights of low-precision parameters."""
        state_dict = super().state_dict()
        state_dict["master"] = self.masters.state_dict(all_params(self.param_groups))
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load an ``AdamW8bit`` or a torch ``AdamW`` state dict (float moments are quantised)."""
        if "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"not an optimizer state dict: keys {sorted(state_dict)}")
        super().load_state_dict({**state_dict, "state": {}})
        self.masters.load_state_dict(state_dict.get("master"), all_params(self.param_groups))
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        param_of = dict(zip(saved_ids, chain.from_iterable(g["params"] for g in self.param_groups)))
        for key, saved in state_dict["state"].items():
            if key not in param_of:
                raise ValueError(f"state for unknown parameter id {key!r}")
            param = param_of[key]
            if "step" not in saved:
                raise ValueError(f"not an Adam state for parameter {key!r}: keys {sorted(saved)}")
            state = {"step": torch.as_tensor(saved["step"], dtype=torch.float32).clone()}
            for name, signed in _MOMENTS:
                state.update(
                    convert_moment(saved, name, local(param) if should_quantize(param) else param,
                                   should_quantize(param), signed,
                                   label=f"state of parameter {key!r}")
                )  # fmt: skip
            self.state[param] = state


def _validate_options(options: dict[str, Any], owner: str) -> None:
    """A ``ValueError`` naming the first invalid option (NaN included: ``NaN < 0`` is False)."""
    for name in ("lr", "eps", "weight_decay"):
        check_non_negative(name, options[name], owner)
    betas = options["betas"]
    if (
        not isinstance(betas, (tuple, list))
        or len(betas) != 2
        or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)
    ):
        raise ValueError(f"{owner}: invalid betas {betas!r}, expected two values in [0, 1)")


def float_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """An ``AdamW8bit`` state dict with every 8-bit moment de-quantised: loadable by torch ``AdamW``."""
    state = {}
    for key, saved in state_dict["state"].items():
        converted = {k: v for k, v in saved.items() if not k.endswith(ABSMAX_SUFFIX)}
        for name, signed in _MOMENTS:
            if is_quantized(saved, name):
                converted[name] = dequantize(Quantized(saved[name], saved[name + ABSMAX_SUFFIX], signed))
        state[key] = converted
    groups = [{k: v for k, v in g.items()} for g in state_dict["param_groups"]]
    for group in groups:
        group.setdefault("amsgrad", False)
        group.setdefault("maximize", False)
    return {"state": state, "param_groups": groups}


def _cpu_kernels(param: Tensor, grad: Tensor, state: dict[str, Tensor]) -> _cpu._Kernels | None:
    """The compiled CPU kernels when they can take this float32 tensor and its state, else None."""
    if param.dtype != torch.float32 or grad.dtype != torch.float32:
        return None
    moments = [value for key, value in state.items() if key != "step"]
    if not all(m.dtype in (torch.float32, torch.uint8) for m in moments):
        return None
    return _cpu.kernels() if _cpu.usable(param, grad, *moments) else None


def _adamw_step(
    param: Tensor, grad: Tensor, state: dict[str, Tensor], group: dict[str, Any], label: str
) -> None:
    lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    quantized = is_quantized(state, "exp_avg")
    kernels = _cpu_kernels(param, grad, state)
    finite = kernels.all_finite(grad) if kernels is not None else not quantized or bool(torch.isfinite(grad).all())
    if quantized and not finite:
        raise FloatingPointError(
            f"non-finite gradient in {label}: step refused, its 8-bit state is unchanged"
        )
    state["step"] += 1
    t = state["step"].item()
    if kernels is not None:
        # One fused pass (optim/_cpu.py): AdamW is DualOptim+ without a base state, its moments
        # the delta pair; the floor v >= m^2 only for 8-bit tensors, as below.
        scalars = _cpu.KernelScalars(
            lr=lr, weight_decay=weight_decay, w_d1=1 - beta1, w_d2=1 - beta2,
            c_d1=1 / (1 - beta1**t), c_d2=1 / (1 - beta2**t), eps=eps, guard=int(quantized),
        )  # fmt: skip
        moments = [
            (state[name], state[name + ABSMAX_SUFFIX], code_tables(signed, param.device)) if quantized else state[name]
            for name, signed in _MOMENTS
        ]
        refused = kernels.quantized_update(param, grad, [None, None, *moments], scalars)
        if refused >= 0:
            raise FloatingPointError(
                f"{label}: a moment overflowed in block {refused} (elements {refused * BLOCK_SIZE}.."
                f"{(refused + 1) * BLOCK_SIZE - 1}); refusing to quantize it, which would turn the whole block into NaN"
            )
        return
    flat_param = param.view(-1) if param.is_contiguous() else param.reshape(-1).clone()
    flat_grad = grad.reshape(-1)
    dtype = compute_dtype(param)
    chunk = chunk_elements(param.device)
    for start in range(0, flat_param.numel(), chunk):
        end = min(start + chunk, flat_param.numel())
        g = flat_grad[start:end].to(dtype)
        m, v = (read_moment(state, name, signed, start, end, dtype) for name, signed in _MOMENTS)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        encoded = [
            encode_moment(state, name, value, signed, label)
            for (name, signed), value in zip(_MOMENTS, (m, v))
        ]
        for (name, _), code in zip(_MOMENTS, encoded):
            store_moment(state, name, start, end, code)
        m_hat = m.div_(1 - beta1**t)
        v_hat = v.div_(1 - beta2**t)
        if quantized:
            torch.maximum(v_hat, m_hat * m_hat, out=v_hat)  # see the class docstring
        values = flat_param[start:end]
        values.copy_(
            values.to(dtype).mul_(1 - lr * weight_decay).addcdiv_(m_hat, v_hat.sqrt_().add_(eps), value=-lr)
        )
    if not param.is_contiguous():
        param.copy_(flat_param.view(param.shape))
