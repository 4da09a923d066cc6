"""The two shapes every image-classification module passes around."""

from __future__ import annotations

from torch import Tensor

__all__ = ["Batch", "Mask"]

#: (images, labels) of one mini-batch, or of a whole set.
Batch = tuple[Tensor, Tensor]
#: parameter name -> bool tensor of its shape, True where the weight may move.
Mask = dict[str, Tensor]
