"""SalUn: Random Label restricted to the salient weights of the forget set."""

from dataclasses import dataclass
from typing import Any

from torch import nn

from dualoptim.vision.masks import saliency_mask
from dualoptim.vision.methods.base import METHODS, Batch, subsample
from dualoptim.vision.methods.rl import RandomLabel

__all__ = ["SalUn"]


@METHODS.register("SalUn")
@dataclass
class SalUn(RandomLabel):
    """RL's losses (inherited) on the weights selected by a saliency mask, for both objectives.

    Mask: the top ``mask_ratio`` of weights by :math:`|\\bar g_f|`, the mean forget-set gradient
    of :math:`\\ell` (``saliency="forget-minus-retain"`` uses :math:`|\\bar g_f| - |\\bar g_r|`).
    ``mask_examples`` caps the examples each mean gradient is estimated from.
    """

    mask_ratio: float = 0.5
    saliency: str = "forget"
    mask_examples: int = 4096

    def prepare_examples(self) -> int:
        return self.mask_examples

    def prepare(self, model: nn.Module, forget: Batch, retain: Batch, generator: Any) -> None:
        if self.saliency not in ("forget", "forget-minus-retain"):
            raise ValueError(
                f"SalUn saliency must be 'forget' or 'forget-minus-retain', got {self.saliency!r}"
            )
        super().prepare(model, forget, retain, generator)
        forget = subsample(forget, self.mask_examples, generator)
        retain = (
            subsample(retain, self.mask_examples, generator)
            if self.saliency == "forget-minus-retain"
            else None
        )
        mask = saliency_mask(model, forget, retain, ratio=self.mask_ratio)
        self.forget_mask = self.retain_mask = mask
