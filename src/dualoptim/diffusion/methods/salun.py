"""SalUn for diffusion: map the forgotten class onto a pseudo-class on salient weights only."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dualoptim.diffusion.masks import saliency_mask
from dualoptim.diffusion.methods.base import METHODS, Batch, Method

__all__ = ["SalUn"]


@METHODS.register("SalUn")
@dataclass
class SalUn(Method):
    """Forget loss on forget images :math:`x_0` of class :math:`c_f`, pseudo-class :math:`c_p = (c_f + 1) \\bmod K`:

    .. math:: L_f = \\frac1B \\sum_i \\lVert \\epsilon_\\theta(x_t, t, c_f) - \\mathrm{sg}(\\epsilon_\\theta(x_t, t, c_p)) \\rVert^2

    (the forgotten label is steered to denoise like another class). :math:`L_r` is the noise loss
    on retain images times ``retain_weight`` (1e-3 in the reference code). Both objectives are
    masked to the top ``mask_ratio`` of weights by the saliency :math:`|\\sum_i \\nabla_\\theta \\ell_i|`
    on the forget images, and clipped at ``clip``.
    """

    retain_weight: float = 1e-3
    mask_ratio: float = 0.5
    mask_images: int = 128
    clip: float = 1.0

    def prepare(self, model: nn.Module, context) -> None:
        super().prepare(model, context)
        images, labels = context.forget
        subset = (images[: self.mask_images], labels[: self.mask_images])
        self.forget_mask = self.retain_mask = saliency_mask(model, self.noise_losses, subset, self.mask_ratio)
        self.forget_clip = self.retain_clip = self.clip
        self.pseudo = (context.forget_class + 1) % context.num_classes

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        diffusion = self.context.diffusion
        t = diffusion.random_timesteps(len(images)).to(images.device)
        noisy = diffusion.train_scheduler.add_noise(images, torch.randn_like(images), t)
        with torch.no_grad():
            target = model(noisy, t, torch.full_like(labels, self.pseudo))
        return (model(noisy, t, labels) - target).pow(2).flatten(1).sum(dim=1).mean()

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        return self.retain_weight * super().retain_loss(model, batch, progress)
