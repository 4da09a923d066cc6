"""The error every task's loop raises when unlearning diverges."""

from __future__ import annotations

__all__ = ["NonFiniteLoss"]


class NonFiniteLoss(RuntimeError):
    """A loss, a gradient or the parameters became NaN or infinite: the run cannot go on.

    Benchmarks record the message as the run's reason and go on with the other runs.
    """
