"""RL (pseudo-class relabelling): teach the forgotten label to draw another class's images."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dualoptim.diffusion.methods.base import METHODS, Batch, Method

__all__ = ["RL"]


@METHODS.register("RL")
@dataclass
class RL(Method):
    """Random labelling for a generator: :math:`L_f` is the noise loss of images of the pseudo-class
    :math:`(c_f + 1) \\bmod K` under the forgotten label :math:`c_f`, so the label's images move to a
    class the model keeps. :math:`L_r`: the noise loss on retain images. No mask; both clipped at ``clip``."""

    clip: float = 1.0

    def prepare(self, model: nn.Module, context) -> None:
        super().prepare(model, context)
        self.forget_clip = self.retain_clip = self.clip
        images, labels = context.retain
        self.pseudo = images[labels == (context.forget_class + 1) % context.num_classes]

    def data(self):
        # forget batches are pseudo-class images carrying the forgotten label
        return (self.pseudo, torch.full((len(self.pseudo),), self.context.forget_class)), self.context.retain

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        return self.noise_losses(model, batch).mean()
