"""SCRUB: move away from the original model on the forget set, stay with it on the retain set."""

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.vision.methods.base import METHODS, Batch, Method


def _kl_teacher_student(teacher_logits: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """:math:`\\mathrm{KL}(p_{teacher} \\| p_\\theta)`, averaged over the batch."""
    return F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )


__all__ = ["SCRUB"]


@METHODS.register("SCRUB")
@dataclass
class SCRUB(Method):
    """Forget loss :math:`-\\mathrm{KL}(p_{teacher} \\| p_\\theta)` on :math:`B_f`; retain loss
    :math:`\\gamma\\,\\ell + \\alpha\\,\\mathrm{KL}(p_{teacher} \\| p_\\theta)` on :math:`B_r`.

    The teacher is a frozen copy of the model before unlearning.
    """

    gamma: float = 1.0
    alpha: float = 0.5
    temperature: float = 1.0
    teacher: nn.Module | None = field(default=None, init=False, repr=False)

    def prepare(self, model: nn.Module, forget: Batch, retain: Batch, generator: object) -> None:
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)

    def _teacher_logits(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            return self.teacher(images)

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, _ = batch
        return -_kl_teacher_student(self._teacher_logits(images), model(images), self.temperature)

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        images, labels = batch
        logits = model(images)
        kl = _kl_teacher_student(self._teacher_logits(images), logits, self.temperature)
        return self.gamma * F.cross_entropy(logits, labels) + self.alpha * kl
