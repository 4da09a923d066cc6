"""SFRon: adaptive gradient ascent on Fisher-selected weights, 1 forget step per 5 retain steps."""

import math
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.vision.masks import fisher_mask
from dualoptim.vision.methods.base import METHODS, Batch, Method, subsample

__all__ = ["SFRon"]


@METHODS.register("SFRon")
@dataclass
class SFRon(Method):
    """Adaptive GA forget loss under a Fisher mask; plain retain loss on every weight.

    Forget loss on a batch with per-example losses :math:`\\ell_i`:

    .. math::
        L_f = -c(t)\\, \\frac{\\sum_i w_i \\ell_i}{\\sum_i w_i}, \\quad
        w_i = \\mathrm{sg}(\\ell_i)^{-\\lambda}, \\quad
        c(t) = c_0 \\cdot \\tfrac12 (1 + \\cos \\pi t)

    so examples that are already forgotten (large :math:`\\ell_i`) weigh less, and the push fades
    from ``weight`` (:math:`c_0` = 25) to 0 over the run. The forget gradient is masked to weights
    whose diagonal Fisher on D_f is at least ``mask_threshold`` times that on D_r, then clipped to a
    global norm of ``clip`` (7). Retain loss: :math:`\\ell` on every weight. Learning rates follow
    cosine schedules; the published schedule is 1 forget step per 5 retain steps.
    """

    lr_schedule = "cosine"
    schedule_defaults = {"forget_steps": 1, "retain_steps": 5}

    adaptive_lambda: float = 0.5
    weight: float = 25.0
    clip: float = 7.0
    mask_threshold: float = 1.0
    mask_examples: int = 1024

    def prepare_examples(self) -> int:
        return self.mask_examples

    def prepare(self, model: nn.Module, forget: Batch, retain: Batch, generator: Any) -> None:
        self.forget_mask = fisher_mask(
            model,
            subsample(forget, self.mask_examples, generator),
            subsample(retain, self.mask_examples, generator),
            threshold=self.mask_threshold,
        )
        self.forget_clip = self.clip

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        losses = F.cross_entropy(model(images), labels, reduction="none")
        # w_i = l_i^(-lambda), detached: a weighting of examples, not a term to differentiate.
        weights = losses.detach().clamp_min(1e-8).pow(-self.adaptive_lambda)
        scale = self.weight * 0.5 * (1.0 + math.cos(math.pi * progress))
        return -scale * (weights * losses).sum() / weights.sum()

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels)
