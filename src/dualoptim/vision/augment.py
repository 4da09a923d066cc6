"""Training augmentation on the device: random crop with zero padding and horizontal flip.

The papers' CIFAR and TinyImageNet pipelines train with ``RandomCrop(size, padding=4)`` and
``RandomHorizontalFlip()`` (``docs/design.md``, "Paper-scale presets"). Here the images of a
batch are already one tensor on the device, so the same two transforms are done there, for the
whole batch at once, instead of per image on the CPU in a ``DataLoader`` worker.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["crop_and_flip"]


def crop_and_flip(images: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """A random ``H x W`` crop of each zero-padded image, then a horizontal flip with probability 1/2.

    ``images`` is ``[N, C, H, W]``; a new tensor of the same shape is returned (the input is not
    modified). The offsets and flips are drawn from ``generator`` on the CPU, so a seed gives the
    same augmentation on every device. Padding is zero in normalised units, i.e. the training
    mean colour, where torchvision pads black before normalising; the difference is the colour of
    a border of at most ``padding`` pixels.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, _, height, width = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(images.device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    padded = F.pad(images, (padding, padding, padding, padding))
    # Row and column indices of every crop: image i keeps rows dy_i..dy_i+H-1, columns dx_i..dx_i+W-1.
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)
    # A flipped image reads its columns right to left.
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indexing over (batch, row, column) puts the channel axis last: [N, H, W, C].
    cropped = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2).contiguous()
