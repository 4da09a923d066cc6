"""GA: gradient ascent on the noise loss of the forgotten class (the simplest baseline)."""

from dataclasses import dataclass

from torch import Tensor, nn

from dualoptim.diffusion.methods.base import METHODS, Batch, Method

__all__ = ["GA"]


@METHODS.register("GA")
@dataclass
class GA(Method):
    """:math:`L_f = -\\frac1B \\sum_i \\ell_i` on forget images; :math:`L_r` the noise loss; both clipped at ``clip``."""

    clip: float = 1.0

    def prepare(self, model: nn.Module, context) -> None:
        super().prepare(model, context)
        self.forget_clip = self.retain_clip = self.clip

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        return -self.noise_losses(model, batch).mean()
