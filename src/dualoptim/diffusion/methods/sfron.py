"""SFRon for diffusion: adaptive gradient ascent on Fisher-selected weights, then a plain retain step."""

import math
from dataclasses import dataclass

from torch import Tensor, nn

from dualoptim.diffusion.masks import fisher_ratio_mask
from dualoptim.diffusion.methods.base import METHODS, Batch, Method

__all__ = ["SFRon"]


@METHODS.register("SFRon")
@dataclass
class SFRon(Method):
    """Forget loss on forget images with per-image noise losses :math:`\\ell_i`:

    .. math::
        L_f = -c(p)\\, \\frac{\\sum_i w_i \\ell_i}{\\sum_i w_i}, \\quad
        w_i = \\mathrm{sg}(\\ell_i)^{-\\lambda}, \\quad
        c(p) = \\alpha \\cdot \\tfrac12 (1 + \\cos \\pi p)

    (:math:`\\lambda` = ``adaptive_lambda`` 0.5, :math:`\\alpha` = ``forget_alpha``: 10 in the
    reference, 1 with DualOptim; :math:`p` the run's progress), so images already forgotten weigh
    less and the push fades. The forget gradient is masked to weights with
    :math:`(F_f + 10^{-15})/(F_r + 10^{-15}) \\ge 1` (diagonal Fisher of the noise loss on forget
    and retain images); :math:`L_r` is the noise loss on every weight. Both clipped at ``clip``.
    """

    forget_alpha: float = 10.0
    adaptive_lambda: float = 0.5
    clip: float = 1.0
    mask_images: int = 128

    def prepare(self, model: nn.Module, context) -> None:
        super().prepare(model, context)
        forget = tuple(x[: self.mask_images] for x in context.forget)
        retain = tuple(x[: self.mask_images] for x in context.retain)
        self.forget_mask = fisher_ratio_mask(model, self.noise_losses, forget, retain)
        self.forget_clip = self.retain_clip = self.clip

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        losses = self.noise_losses(model, batch)
        # w_i = l_i^(-lambda), detached: a weighting of images, not a term to differentiate
        weights = losses.detach().clamp_min(1e-8).pow(-self.adaptive_lambda)
        scale = self.forget_alpha * 0.5 * (1.0 + math.cos(math.pi * progress))
        return -scale * (weights * losses).sum() / weights.sum()
