"""Forget/retain splits of a training set: random (fraction or count), a whole class, or given indices."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["Split", "make_split", "read_indices"]

SPLIT_KINDS = ("random", "class", "indices")


@dataclass(frozen=True)
class Split:
    """Sorted int64 indices into the training set: the forget set D_f and the retain set D_r = D \\ D_f."""

    forget: Tensor
    retain: Tensor


def make_split(
    labels: Tensor,
    kind: str = "random",
    *,
    fraction: float | None = None,
    count: int | None = None,
    forget_class: int | None = None,
    indices: list[int] | Tensor | None = None,
    seed: int = 0,
) -> Split:
    """Split ``range(len(labels))`` into forget and retain indices.

    ``kind="random"`` draws ``count`` examples, or ``round(fraction * N)``, uniformly with ``seed``;
    ``"class"`` forgets every example of ``forget_class``; ``"indices"`` forgets exactly ``indices``.
    Every invalid request is a ``ValueError`` that names the bad value.
    """
    n = len(labels)
    if kind == "random":
        if count is None:
            if fraction is None:
                raise ValueError("a random forget set needs a forget fraction or a forget count")
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"forget fraction must be in (0, 1), got {fraction}")
            count = round(fraction * n)
        if not 0 < count < n:
            raise ValueError(f"forget count must be in [1, {n - 1}] for {n} training examples, got {count}")
        generator = torch.Generator().manual_seed(seed)
        forget = torch.randperm(n, generator=generator)[:count]
    elif kind == "class":
        if forget_class is None:
            raise ValueError("a class forget set needs a forget class")
        forget = torch.nonzero(labels == forget_class).flatten()
        if len(forget) == 0:
            classes = sorted(set(labels.tolist()))
            raise ValueError(
                f"empty forget set: class {forget_class} has no training examples (classes: {classes})"
            )
    elif kind == "indices":
        if indices is None:
            raise ValueError("an indices forget set needs indices (a file of integers)")
        forget = torch.as_tensor(indices, dtype=torch.int64).flatten()
        if len(forget) == 0:
            raise ValueError("empty forget set: no forget indices given")
        bad = forget[(forget < 0) | (forget >= n)]
        if len(bad):
            raise ValueError(f"forget indices out of range [0, {n}): {bad[:5].tolist()}")
        unique, counts = torch.unique(forget, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"duplicated forget indices: {unique[counts > 1][:5].tolist()}")
    else:
        raise ValueError(f"unknown forget set kind {kind!r}; valid: {', '.join(SPLIT_KINDS)}")
    forget = torch.sort(forget).values
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget] = False
    retain = torch.nonzero(keep).flatten()
    if len(retain) == 0:
        raise ValueError(f"empty retain set: the forget set holds all {n} training examples")
    return Split(forget=forget, retain=retain)


def read_indices(path: str | Path) -> list[int]:
    """Read forget indices from a JSON list or a text file of integers (whitespace or commas)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"forget indices file does not exist: {path}")
    text = path.read_text(encoding="utf-8").strip()
    try:
        values = (
            json.loads(text) if text.startswith("[") else [int(tok) for tok in text.replace(",", " ").split()]
        )
    except ValueError as error:
        raise ValueError(f"forget indices file {path} is not a list of integers: {error}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"forget indices file {path} is not a list of integers")
    return values
