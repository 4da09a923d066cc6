"""Per-sample training transforms for images read through a ``DataLoader`` (plain torch, no torchvision).

The papers' pipelines for image folders (TinyImageNet) transform each training image in the loader:
``RandomCrop(64, padding=4)``, ``RandomHorizontalFlip()``, ``Resize(224, BICUBIC)``, then the
normalisation; test images are only resized and normalised. :class:`TrainAugment` does the same
on a decoded, normalised ``[C, H, W]`` tensor, and :class:`AugmentedImages` applies it to every
example of a dataset. In-memory tensors are augmented on the device instead, a batch at once
(:mod:`dualoptim.vision.augment`).

Randomness: each example draws its crop and flip from its own generator seeded by (pass seed,
example index), so a seed gives the same augmentation whatever the number of loader workers or
the batch order, and a resumed stream repeats its pass exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["AugmentedImages", "TrainAugment", "resize_bicubic"]


def resize_bicubic(image: Tensor, size: int) -> Tensor:
    """``image`` ``[C, H, W]`` resized to ``size x size`` with bicubic interpolation (torchvision's
    ``Resize(size, BICUBIC)`` for square images; PIL's antialiasing only matters when shrinking)."""
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image.unsqueeze(0), size=(size, size), mode="bicubic", align_corners=False,
                         antialias=True).squeeze(0)  # fmt: skip


@dataclass(frozen=True)
class TrainAugment:
    """Random crop of the padded image, horizontal flip with probability 1/2, optional bicubic resize.

    ``padding`` pixels are added on every side and an ``H x W`` window is cut at a random offset
    (``RandomCrop(H, padding)``); the padding has the colour ``fill`` per channel (pass the
    normalised value of black, ``-mean / std``, to pad as torchvision does before normalising; 0 is
    the mean colour). ``resize``: the side of the square output (224 for Swin-T), None keeps the size.
    """

    padding: int = 4
    flip: bool = True
    resize: int | None = None

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")
        if self.resize is not None and self.resize < 1:
            raise ValueError(f"resize must be a positive image side or None, got {self.resize}")

    def __call__(self, image: Tensor, generator: torch.Generator, fill: Sequence[float] | None = None) -> Tensor:
        channels, height, width = image.shape
        if self.padding:
            pad = self.padding
            padded = image.new_empty(channels, height + 2 * pad, width + 2 * pad)
            padded[:] = torch.as_tensor(fill if fill is not None else [0.0] * channels, dtype=image.dtype).view(-1, 1, 1)
            padded[:, pad : pad + height, pad : pad + width] = image
            top, left = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
            image = padded[:, top : top + height, left : left + width]
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            image = image.flip(-1)
        if self.resize is not None:
            image = resize_bicubic(image, self.resize)
        return image.contiguous()


class AugmentedImages(Dataset):
    """``dataset``'s examples through ``augment``, the randomness of example ``i`` seeded by (``seed``, ``i``)."""

    def __init__(self, dataset: Dataset, augment: TrainAugment, seed: int, fill: Sequence[float] | None = None) -> None:
        self.dataset, self.augment, self.seed, self.fill = dataset, augment, int(seed), fill

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self.dataset[index]
        # A generator per example: the same crop whichever worker reads it, in whatever order.
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + int(index)) % (1 << 63))
        return self.augment(image, generator, self.fill), label
