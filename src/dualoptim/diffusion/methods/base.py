"""What a diffusion unlearning method is: a forget loss and a retain loss on batches of labelled images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dualoptim.diffusion.process import Diffusion
from dualoptim.registry import Registry

__all__ = ["METHODS", "Batch", "Context", "Method", "build_method"]

#: images in [-1, 1] and their int64 labels
Batch = tuple[Tensor, Tensor]
METHODS = Registry["type[Method]"]("method")


@dataclass
class Context:
    """What a method may look at once before unlearning (:meth:`Method.prepare`)."""

    diffusion: Diffusion
    #: the forgotten class and how many classes the model knows (the null label is ``num_classes``)
    forget_class: int
    num_classes: int
    #: real training images of the forgotten class, and of every other class
    forget: Batch
    retain: Batch
    #: images the original model generated for every class (SA's replay and Fisher)
    generated: Batch
    #: condition-drop probability of retain noise losses (keeps the unconditional branch trained)
    cond_drop: float
    generator: torch.Generator


@dataclass
class Method:
    """An unlearning method: :meth:`forget_loss` on forget batches, :meth:`retain_loss` on retain batches.

    The sign of gradient ascent lives here; the loop decides how the two losses are optimised
    (the strategy). Subclasses are dataclasses whose fields are the method's hyper-parameters.
    """

    has_forget: ClassVar[bool] = True
    has_retain: ClassVar[bool] = True

    #: set by :meth:`prepare`: which weights each objective may move (None: all of them)
    forget_mask: dict[str, Tensor] | None = field(default=None, init=False, repr=False)
    retain_mask: dict[str, Tensor] | None = field(default=None, init=False, repr=False)
    #: global gradient-norm clip of each objective's gradient (None: no clipping)
    forget_clip: float | None = field(default=None, init=False)
    retain_clip: float | None = field(default=None, init=False)
    context: Context | None = field(default=None, init=False, repr=False)

    def prepare(self, model: nn.Module, context: Context) -> None:
        """Look at the original model and the data once (masks, Fisher, targets); default: keep the context."""
        self.context = context

    def data(self) -> tuple[Batch, Batch]:
        """The sets the forget and retain batches are drawn from (default: the real images)."""
        return self.context.forget, self.context.retain

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no forget loss")

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        """The usual training loss on retain images, condition dropout included."""
        images, labels = batch
        return self.context.diffusion.noise_losses(model, images, labels, cond_drop=self.context.cond_drop).mean()

    def noise_losses(self, model: nn.Module, batch: Batch) -> Tensor:
        """Per-image noise losses without condition dropout (masks and Fisher estimates use them)."""
        return self.context.diffusion.noise_losses(model, *batch)


def build_method(name: str, options: dict[str, Any] | None = None) -> Method:
    """Instantiate registered method ``name`` with hyper-parameter ``options`` (unknown keys are errors)."""
    return METHODS.build(name, options)
