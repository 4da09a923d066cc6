"""SalUn: Random Label restricted to the salient weights of the forget set."""

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.methods.base import METHODS, Batch, Method, subsample


@METHODS.register("SalUn")
@dataclass
class SalUn(Method):
    """RL's losses on the weights selected by a saliency mask, for both objectives.

    Mask: the top ``mask_ratio`` of weights by :math:`|\\bar g_f|`, the mean forget-set gradient
    of :math:`\\ell` (``saliency="forget-minus-retain"`` uses :math:`|\\bar g_f| - |\\bar g_r|`).
    ``mask_examples`` caps the examples each mean gradient is estimated from.
    """

    mask_ratio: float = 0.5
    saliency: str = "forget"
    mask_examples: int = 4096
    generator: Any = field(default=None, init=False, repr=False)

    def prepare(self, model: nn.Module, forget: Batch, retain: Batch, generator: Any) -> None:
        from dualoptim.unlearn.masks import saliency_mask

        if self.saliency not in ("forget", "forget-minus-retain"):
            raise ValueError(
                f"SalUn saliency must be 'forget' or 'forget-minus-retain', got {self.saliency!r}"
            )
        self.generator = generator
        forget = subsample(forget, self.mask_examples, generator)
        retain = (
            subsample(retain, self.mask_examples, generator)
            if self.saliency == "forget-minus-retain"
            else None
        )
        mask = saliency_mask(model, forget, retain, ratio=self.mask_ratio)
        self.forget_mask = self.retain_mask = mask

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
