"""What an unlearning method is: a forget loss and a retain loss, nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dualoptim.registry import Registry
from dualoptim.vision.types import Batch, Mask

__all__ = ["METHODS", "Batch", "Mask", "Method", "build_method", "subsample"]


METHODS = Registry["type[Method]"]("method")


@dataclass
class Method:
    """An unlearning method: :meth:`forget_loss` on a forget batch and :meth:`retain_loss` on a retain batch.

    The sign of gradient ascent lives here (a GA forget loss is ``-cross_entropy``), and the loop
    decides how the two losses are optimised (``joint``, ``alternate``, ``dual``, ``dual+``).
    Subclasses are dataclasses whose fields are the method's hyper-parameters; class attributes
    say which losses exist and which schedule the method was published with.
    """

    #: the method has a forget loss / a retain loss (a loss it lacks is never asked for).
    has_forget: ClassVar[bool] = True
    has_retain: ClassVar[bool] = True
    #: start from a fresh initialisation instead of the trained model (Retrain).
    from_scratch: ClassVar[bool] = False
    #: "constant" or "cosine" learning rates over the run.
    lr_schedule: ClassVar[str] = "constant"
    #: defaults of the schedule (outer_iterations, forget_steps, retain_steps) the method was published with.
    schedule_defaults: ClassVar[dict[str, Any]] = {}

    #: set by :meth:`prepare`: which weights each objective may move (None: all of them).
    forget_mask: Mask | None = field(default=None, init=False, repr=False)
    retain_mask: Mask | None = field(default=None, init=False, repr=False)
    #: global gradient-norm clip of the forget gradient (None: no clipping).
    forget_clip: float | None = field(default=None, init=False)

    def prepare(self, model: nn.Module, forget: Batch, retain: Batch, generator: Any) -> None:
        """Look at the trained model and the data once before unlearning (masks, teachers)."""

    def prepare_examples(self) -> int:
        """How many examples of each set :meth:`prepare` needs when a set is streamed (0: none)."""
        return 0

    def forget_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        """Loss whose minimisation removes the forget batch's influence; ``progress`` in [0, 1)."""
        raise NotImplementedError(f"{type(self).__name__} has no forget loss")

    def retain_loss(self, model: nn.Module, batch: Batch, progress: float) -> Tensor:
        """Loss whose minimisation keeps what the model knows about the retain set."""
        raise NotImplementedError(f"{type(self).__name__} has no retain loss")


def build_method(name: str, options: dict[str, Any] | None = None) -> Method:
    """Instantiate registered method ``name`` with hyper-parameter ``options`` (unknown keys are errors)."""
    return METHODS.build(name, options)



def subsample(data: Batch, limit: int, generator: torch.Generator | None) -> Batch:
    """A random subset of at most ``limit`` examples (all of them when the set is smaller)."""
    images, labels = data
    if len(labels) <= limit:
        return data
    chosen = torch.randperm(len(labels), generator=generator)[:limit]
    return images[chosen], labels[chosen]
