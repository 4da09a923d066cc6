"""Float32 master weights for bf16/fp16 parameters, shared by every optimizer of this package.

A bf16 number has 8 significant bits: next to a weight of 1.0 the nearest other values are
1 ± 2^-8..2^-7, so an Adam step of ``lr = 1e-5`` (about 1e-5 per coordinate) rounds back to
the old value and is lost, every step. Training in bf16 at the learning rates of LLM unlearning
therefore keeps a float32 copy of each low-precision parameter (its *master*), applies every
update to the master, and rounds the master into the parameter once per step; many small
updates then add up as in float32 and the parameter is always the rounded float32 trajectory.

:class:`MasterWeights` does this around any optimizer step without touching its maths: inside
:meth:`MasterWeights.swapped`, each low-precision parameter *is* its float32 master (its
``.data`` and ``.grad`` are swapped for float32 tensors), so the optimizer creates and updates
float32 state against float32 values; on exit the parameter gets its own storage back, holding
the master rounded once. The optimizers hold one as ``self.masters`` (``master_weights=True``,
the default) and save the masters in their state dict under ``"master"`` (flat parameter index ->
float32 tensor). Cost: 4 bytes per low-precision parameter; float32/float64 parameters are
untouched and cost nothing. ``docs/design.md`` §2.6.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["LOW_PRECISION", "MasterWeights", "all_params"]

LOW_PRECISION = (torch.bfloat16, torch.float16)


class MasterWeights:
    """Float32 masters of the low-precision parameters an optimizer steps (see the module docstring)."""

    def __init__(self, enabled: bool = True) -> None:
        if not isinstance(enabled, bool):
            raise ValueError(f"master_weights must be True or False, got {enabled!r}")
        self.enabled = enabled
        self.copies: dict[Tensor, Tensor] = {}  # parameter -> its float32 master

    def master(self, param: Tensor) -> Tensor:
        """The master of ``param``, made from its current value on first use."""
        if param not in self.copies:
            self.copies[param] = param.detach().to(torch.float32, copy=True)
        return self.copies[param]

    @contextlib.contextmanager
    def swapped(self, params: Iterable[Tensor], *, with_grads: bool = True) -> Iterator[None]:
        """Inside, every low-precision parameter (with a gradient, unless ``with_grads=False``)
        holds its float32 master and a float32 copy of its gradient; on exit it holds the master
        rounded to its own dtype, and its own gradient again."""
        swaps = []
        if self.enabled:
            for param in params:
                if param.dtype not in LOW_PRECISION or (with_grads and param.grad is None):
                    continue
                low_data, low_grad = param.data, param.grad
                param.grad = None  # .data and .grad must agree in dtype at every assignment
                param.data = self.master(param)
                if low_grad is not None:
                    param.grad = low_grad.to(torch.float32)
                swaps.append((param, low_data, low_grad))
        try:
            yield
        finally:
            for param, low_data, low_grad in swaps:
                master = param.data
                param.grad = None
                param.data = low_data
                low_data.copy_(master)  # the one rounding of the step
                param.grad = low_grad

    def state_dict(self, params: list[Tensor]) -> dict[int, Tensor]:
        """``{flat index: master}`` for the parameters (in the optimizer's order) that have one."""
        return {index: self.copies[p].clone() for index, p in enumerate(params) if p in self.copies}

    def load_state_dict(self, saved: dict[Any, Tensor] | None, params: list[Tensor]) -> None:
        """Masters from a state dict; a parameter without a saved master gets one from its value
        (a state dict saved without masters, or by an optimizer that had them off)."""
        self.copies.clear()
        if not self.enabled:
            return
        for key, value in (saved or {}).items():
            index = int(key)
            if not 0 <= index < len(params):
                raise ValueError(f"master weight for unknown parameter index {key!r} (of {len(params)})")
            param = params[index]
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(
                    f"master weight {key!r} has shape {tuple(value.shape)}, its parameter {tuple(param.shape)}"
                )
            if param.dtype in LOW_PRECISION:
                self.copies[param] = value.detach().to(device=param.device, dtype=torch.float32, copy=True)


def all_params(param_groups: list[dict[str, Any]]) -> list[Tensor]:
    """The parameters of ``param_groups`` in torch's state-dict order (the flat index)."""
    return [p for group in param_groups for p in group["params"]]
