"""GA: gradient ascent on the forget set."""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.vision.methods.base import METHODS, Batch, Method

__all__ = ["GradientAscent"]


@METHODS.register("GA")
@dataclass
class GradientAscent(Method):
    """Forget loss :math:`-\\ell(x, y)` (ascend the forget loss); no retain loss."""

    has_retain = False

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        return -F.cross_entropy(model(images), labels)
