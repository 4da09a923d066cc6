"""NegGrad+: gradient ascent on the forget set with a retain term."""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.vision.methods.base import METHODS, Batch, Method

__all__ = ["NegGradPlus"]


@METHODS.register("NegGrad+")
@dataclass
class NegGradPlus(Method):
    """Forget loss :math:`-\\ell(x_f, y_f)`, retain loss :math:`\\ell(x_r, y_r)`."""

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        return -F.cross_entropy(model(images), labels)

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels)
