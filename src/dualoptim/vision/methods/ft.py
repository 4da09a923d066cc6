"""FT: fine-tune on the retain set only, relying on catastrophic forgetting."""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.vision.methods.base import METHODS, Batch, Method

__all__ = ["FineTune"]


@METHODS.register("FT")
@dataclass
class FineTune(Method):
    """Retain loss :math:`\\ell(x, y)`; no forget loss."""

    has_forget = False

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels)
