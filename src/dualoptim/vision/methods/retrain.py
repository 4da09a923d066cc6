"""Retrain: train from scratch on the retain set, the gold standard every gap is measured against."""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.vision.methods.base import METHODS, Batch, Method

__all__ = ["Retrain"]


@METHODS.register("Retrain")
@dataclass
class Retrain(Method):
    """Retain loss :math:`\\ell(x, y)` from a fresh initialisation; no forget loss."""

    has_forget = False
    from_scratch = True

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels)
