"""The weight masks of the image-classification methods: SalUn's saliency mask and SFRon's Fisher mask.

A mask is ``{parameter name: bool tensor}``, True where the weight may move; the loop makes it
really freeze weights with :mod:`dualoptim.masks` (zeroed gradients, and frozen weights put back
after every step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.vision.types import Batch, Mask

__all__ = [
    "fisher_mask",
    "mean_gradient",
    "saliency_mask",
]


def mean_gradient(model: nn.Module, data: Batch, batch_size: int = 256) -> dict[str, Tensor]:
    """:math:`\\bar g = \\nabla_\\theta \\frac1N \\sum_i \\ell(x_i, y_i)`, in eval mode (batch norm statistics untouched)."""
    images, labels = data
    was_training = model.training
    model.eval()
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    try:
        for start in range(0, len(images), batch_size):
            x, y = images[start : start + batch_size], labels[start : start + batch_size]
            model.zero_grad(set_to_none=True)
            # Sum over the batch, so the total divided by N is the mean over the whole set.
            F.cross_entropy(model(x), y, reduction="sum").backward()
            for name, p in model.named_parameters():
                if p.grad is not None:
                    total[name] += p.grad
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {name: g / len(images) for name, g in total.items()}


def _top_fraction(scores: dict[str, Tensor], ratio: float) -> Mask:
    """True for the ``ratio`` share of weights with the highest score, over the whole model."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"mask ratio must be in (0, 1], got {ratio}")
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = max(1, round(ratio * flat.numel()))
    threshold = torch.topk(flat, keep).values[-1]
    return {name: s >= threshold for name, s in scores.items()}


def saliency_mask(model: nn.Module, forget: Batch, retain: Batch | None = None, ratio: float = 0.5) -> Mask:
    """SalUn's weight saliency: the top ``ratio`` of weights by :math:`|\\bar g_f|`.

    With ``retain`` the score is :math:`|\\bar g_f| - |\\bar g_r|` (the DualOptim code's variant):
    weights that matter for the forget set but not for the retain set.
    """
    scores = {name: g.abs() for name, g in mean_gradient(model, forget).items()}
    if retain is not None:
        for name, g in mean_gradient(model, retain).items():
            scores[name] = scores[name] - g.abs()
    return _top_fraction(scores, ratio)


def diagonal_fisher(model: nn.Module, data: Batch, batch_size: int = 128) -> dict[str, Tensor]:
    """Empirical diagonal Fisher :math:`\\frac1N \\sum_i (\\nabla_\\theta \\ell(x_i, y_i))^2` from per-example gradients."""
    from torch.func import functional_call, grad, vmap

    images, labels = data
    was_training = model.training
    model.eval()
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, (params, buffers), (x.unsqueeze(0),)), y.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    try:
        for start in range(0, len(images), batch_size):
            grads = per_example(
                params, images[start : start + batch_size], labels[start : start + batch_size]
            )
            for name, g in grads.items():
                fisher[name] += g.pow(2).sum(dim=0)
    finally:
        model.train(was_training)
    return {name: f / len(images) for name, f in fisher.items()}


def fisher_mask(model: nn.Module, forget: Batch, retain: Batch, threshold: float = 1.0) -> Mask:
    """SFRon's mask: weights whose diagonal Fisher on D_f is at least ``threshold`` times that on D_r."""
    fisher_forget = diagonal_fisher(model, forget)
    fisher_retain = diagonal_fisher(model, retain)
    return {name: fisher_forget[name] >= threshold * fisher_retain[name] for name in fisher_forget}
