"""How a weight mask really freezes weights, for every task's masked methods (SalUn, SFRon).

A mask is ``{parameter name: bool tensor}``, True where the weight may move; each task builds its
masks (``vision/masks.py``, ``diffusion/masks.py``) and its loop applies them with the three
functions here. Multiplying gradients by the mask is not enough to freeze a weight: weight decay
and momentum (of any optimizer state, shared or per objective) still move it, a known bug of the
public SalUn code. The loops therefore also put frozen weights back after every step
(:func:`restore_frozen`). ``docs/design.md`` §3.1.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["Mask", "mask_gradients", "restore_frozen", "snapshot_frozen"]

#: parameter name -> bool tensor of its shape, True where the weight may move.
Mask = dict[str, Tensor]


def mask_gradients(grads: dict[str, Tensor], mask: Mask | None) -> dict[str, Tensor]:
    """The gradients with every weight the mask freezes set to zero."""
    if mask is None:
        return grads
    return {name: g * mask[name] if name in mask else g for name, g in grads.items()}


def snapshot_frozen(model: nn.Module, masks: Iterable[Mask | None]) -> dict[str, tuple[Tensor, Tensor]]:
    """Copies of the weights frozen by *every* given mask (a joint step freezes what both freeze)."""
    masks = list(masks)
    if any(mask is None for mask in masks):
        return {}  # some objective of this step may move every weight
    saved = {}
    for name, p in model.named_parameters():
        frozen = torch.ones_like(p, dtype=torch.bool)
        for mask in masks:
            if name in mask:
                frozen &= ~mask[name]
            else:
                frozen &= False
        if frozen.any():
            saved[name] = (frozen, p.detach().clone())
    return saved


@torch.no_grad()
def restore_frozen(model: nn.Module, saved: dict[str, tuple[Tensor, Tensor]]) -> None:
    """Put the frozen weights back to their values before the step (undoing decay and momentum)."""
    for name, p in model.named_parameters():
        if name in saved:
            frozen, before = saved[name]
            p.copy_(torch.where(frozen, before, p))
