"""The two shapes every image-classification module passes around."""

from __future__ import annotations

from torch import Tensor

from dualoptim.masks import Mask

__all__ = ["Batch", "Mask"]

#: (images, labels) of one mini-batch, or of a whole set.
Batch = tuple[Tensor, Tensor]
