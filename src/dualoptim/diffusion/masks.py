"""The weight masks of the diffusion methods: SalUn's saliency mask and SFRon's Fisher-ratio mask.

A mask is ``{parameter name: bool tensor}``, True where the weight may move; the loop makes it
really freeze weights with :mod:`dualoptim.masks` (zeroed gradients, and frozen weights put back
after every step, undoing Adam's moments and weight decay).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "fisher_ratio_mask",
    "saliency_mask",
    "squared_gradients",
    "summed_gradient",
]

#: a function of a batch giving one loss per image (the method's noise loss)
LossFn = Callable[[nn.Module, tuple[Tensor, Tensor]], Tensor]


def _batches(data: tuple[Tensor, Tensor], batch_size: int):
    images, labels = data
    for start in range(0, len(labels), batch_size):
        yield images[start : start + batch_size], labels[start : start + batch_size]


def summed_gradient(model: nn.Module, loss_fn: LossFn, data: tuple[Tensor, Tensor], batch_size: int = 64) -> dict[str, Tensor]:
    """:math:`\\sum_i \\nabla_\\theta \\ell_i` over ``data``."""
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for batch in _batches(data, batch_size):
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).sum().backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                total[name] += p.grad
    model.zero_grad(set_to_none=True)
    return total


def squared_gradients(model: nn.Module, loss_fn: LossFn, data: tuple[Tensor, Tensor], batch_size: int = 8) -> dict[str, Tensor]:
    """Diagonal Fisher estimate: the mean over mini-batches of the squared mean-loss gradient.

    Per-image gradients of a U-Net cost one backward pass each; squared gradients of small
    mini-batches (``batch_size`` images) are the usual, cheaper estimate of the same diagonal.
    """
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    count = 0
    for batch in _batches(data, batch_size):
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).mean().backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                total[name] += p.grad.pow(2)
        count += 1
    model.zero_grad(set_to_none=True)
    return {name: f / max(count, 1) for name, f in total.items()}


def _top_fraction(scores: dict[str, Tensor], ratio: float) -> dict[str, Tensor]:
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"mask ratio must be in (0, 1], got {ratio}")
    flat = torch.cat([s.flatten() for s in scores.values()])
    threshold = torch.topk(flat, max(1, round(ratio * flat.numel()))).values[-1]
    return {name: s >= threshold for name, s in scores.items()}


def saliency_mask(model: nn.Module, loss_fn: LossFn, forget: tuple[Tensor, Tensor], ratio: float = 0.5) -> dict[str, Tensor]:
    """SalUn's mask: the top ``ratio`` of weights by :math:`|\\sum_i \\nabla_\\theta \\ell_i|` on the forget images."""
    return _top_fraction({n: g.abs() for n, g in summed_gradient(model, loss_fn, forget).items()}, ratio)


def fisher_ratio_mask(
    model: nn.Module, loss_fn: LossFn, forget: tuple[Tensor, Tensor], retain: tuple[Tensor, Tensor], threshold: float = 1.0
) -> dict[str, Tensor]:
    """SFRon's mask: weights with :math:`(F_f + 10^{-15}) / (F_r + 10^{-15}) \\ge` ``threshold``."""
    f_forget = squared_gradients(model, loss_fn, forget)
    f_retain = squared_gradients(model, loss_fn, retain)
    return {n: (f_forget[n] + 1e-15) / (f_retain[n] + 1e-15) >= threshold for n in f_forget}
