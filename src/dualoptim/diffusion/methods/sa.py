"""SA (Selective Amnesia): map the forgotten class to noise, replay the others, anchor weights with EWC."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dualoptim.diffusion.masks import squared_gradients
from dualoptim.diffusion.methods.base import METHODS, Batch, Method

__all__ = ["SA"]


@METHODS.register("SA")
@dataclass
class SA(Method):
    """Selective Amnesia (Heng & Soh, 2023) as a forget and a retain loss:

    - :math:`L_f`: the noise loss of images drawn uniformly from :math:`[-1, 1]` under the forgotten
      label (the surrogate distribution the label is re-mapped to);
    - :math:`L_r`: the noise loss of images the *original* model generated for the other classes
      (generative replay, no real data needed) plus the EWC penalty
      :math:`\\lambda \\sum_j F_j (\\theta_j - \\theta^*_j)^2`, :math:`F` the diagonal Fisher of the
      noise loss on ``fisher_images`` generated images of every class, :math:`\\theta^*` the
      original weights (:math:`\\lambda` = ``ewc_lambda`` = 10).
    """

    ewc_lambda: float = 10.0
    fisher_images: int = 256

    def prepare(self, model: nn.Module, context) -> None:
        super().prepare(model, context)
        images, labels = context.generated
        chosen = torch.randperm(len(labels), generator=context.generator)[: self.fisher_images]
        self.fisher = squared_gradients(model, self.noise_losses, (images[chosen], labels[chosen]))
        self.anchor = {name: p.detach().clone() for name, p in model.named_parameters()}
        keep = labels != context.forget_class
        self.replay = (images[keep], labels[keep])

    def data(self):
        # forget batches only provide the forgotten label; retain batches are the replayed images
        return self.context.forget, self.replay

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        noise_images = torch.rand(images.shape).to(images.device) * 2 - 1
        return self.noise_losses(model, (noise_images, labels)).mean()

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        replay = self.noise_losses(model, batch).mean()
        ewc = sum((self.fisher[n] * (p - self.anchor[n]).pow(2)).sum() for n, p in model.named_parameters())
        return replay + self.ewc_lambda * ewc
