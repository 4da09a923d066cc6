"""Training a classifier from scratch (the original model and the retrained reference), and checkpoints."""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["load_checkpoint", "save_checkpoint", "train_classifier"]


def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    seed: int = 0,
    progress_bar: bool = False,
    description: str = "train",
) -> float:
    """Train ``model`` in place with SGD + momentum and a cosine learning rate; return the seconds taken."""
    if len(labels) == 0:
        raise ValueError("cannot train on an empty set")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total))
    )
    epochs_iter = range(epochs)
    if progress_bar:
        from tqdm.auto import tqdm

        epochs_iter = tqdm(epochs_iter, desc=description, leave=False, unit="epoch")
    start = time.perf_counter()
    model.train()
    for _ in epochs_iter:
        order = torch.randperm(len(labels), generator=generator)
        for begin in range(0, len(labels), batch_size):
            chosen = order[begin : begin + batch_size]
            loss = F.cross_entropy(model(images[chosen]), labels[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    if images.is_cuda:
        torch.cuda.synchronize(images.device)  # CUDA kernels run asynchronously: wait before timing
    return time.perf_counter() - start


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    """Save ``{"state_dict", "meta"}`` atomically (a crash never leaves half a checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module) -> dict[str, Any]:
    """Load a checkpoint into ``model``; a missing, corrupt or mismatched file is a ``ValueError`` naming it.

    Accepts files written by :func:`save_checkpoint` and bare ``state_dict`` files. Returns the meta dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint does not exist: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"corrupt checkpoint {path}: {type(error).__name__}: {str(error).splitlines()[0]}"
        ) from None
    state_dict = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f"corrupt checkpoint {path}: expected a state dict, got {type(payload).__name__}")
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        first = " ".join(str(error).split())[:300]
        raise ValueError(
            f"checkpoint {path} does not match the model {type(model).__name__}: {first}"
        ) from None
    return payload.get("meta", {}) if "state_dict" in payload else {}
