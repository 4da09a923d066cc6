"""RL (Random Label): train the forget set towards labels drawn uniformly at random."""

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.vision.methods.base import METHODS, Batch, Method

__all__ = ["RandomLabel"]


@METHODS.register("RL")
@dataclass
class RandomLabel(Method):
    """Forget loss :math:`\\ell(x_f, \\tilde y)`, :math:`\\tilde y` uniform over the classes and
    redrawn for every batch; retain loss :math:`\\ell(x_r, y_r)`."""

    generator: Any = field(default=None, init=False, repr=False)

    def prepare(self, model: nn.Module, forget: Batch, retain: Batch, generator: Any) -> None:
        self.generator = generator

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, _ = batch
        logits = model(images)
        random_labels = torch.randint(0, logits.shape[1], (len(images),), generator=self.generator).to(
            logits.device
        )
        return F.cross_entropy(logits, random_labels)

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels)
