"""Endless shuffled mini-batches of an in-memory set, shared by the task loops."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["BatchStream"]


class BatchStream:
    """Endless shuffled mini-batches of ``(images, labels)``; each pass is a fresh permutation from
    ``generator``. Its position is saved and restored with ``state_dict``/``load_state_dict``, so a
    resumed run draws the same batches as an uninterrupted one."""

    def __init__(self, data: tuple[Tensor, Tensor], batch_size: int, generator: torch.Generator) -> None:
        self.images, self.labels = data
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.generator = generator
        self._order: Tensor = torch.empty(0, dtype=torch.int64)
        self._position = 0

    def next(self) -> tuple[Tensor, Tensor]:
        if self._position >= len(self._order):
            if len(self.labels) == 0:  # checked here: a loop may hold a stream it never draws from
                raise ValueError("cannot draw batches from an empty set")
            self._order = torch.randperm(len(self.labels), generator=self.generator)
            self._position = 0
        chosen = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        return self.images[chosen], self.labels[chosen]

    def state_dict(self) -> dict[str, Any]:
        return {"order": self._order.clone(), "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order, self._position = state["order"], state["position"]
