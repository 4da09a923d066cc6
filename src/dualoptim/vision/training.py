"""Training a classifier from scratch (the original model and the retrained reference), and checkpoints."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.vision.augment import crop_and_flip

__all__ = ["LR_SCHEDULES", "TRAIN_OPTIMIZERS", "load_checkpoint", "lr_factor", "save_checkpoint", "train_classifier"]

LR_SCHEDULES = ("cosine", "step")
TRAIN_OPTIMIZERS = ("sgd", "adamw")


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
    optimizer: str = "sgd",
    lr_schedule: str = "cosine",
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    augment: bool = False,
    progress_bar: bool = False,
    description: str = "train",
) -> float:
    """Train ``model`` in place; return the seconds taken.

    ``optimizer``: ``"sgd"`` (momentum, coupled weight decay) or ``"adamw"`` (decoupled weight
    decay). ``lr_schedule``: ``"cosine"`` decays the rate to 0 over every step; ``"step"``
    multiplies it by ``gamma`` at the start of each epoch in ``milestones`` (the papers' ResNet
    schedule: 0.1 at epochs 91 and 136 of 182). ``augment`` trains on random crops of the
    zero-padded images (4 pixels) and random horizontal flips (:func:`crop_and_flip`).
    """
    if len(labels) == 0:
        raise ValueError("cannot train on an empty set")
    if optimizer not in TRAIN_OPTIMIZERS:
        raise ValueError(f"unknown training optimizer {optimizer!r}; valid: {', '.join(TRAIN_OPTIMIZERS)}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
    if lr_schedule == "step" and any(not 0 < m < epochs for m in milestones):
        raise ValueError(f"milestones must be epochs in [1, {epochs - 1}], got {list(milestones)}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    # A second stream for the augmentation, so that the batch order is the same with or without it.
    augment_generator = torch.Generator().manual_seed(seed + 1)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda step: lr_factor(
            step, lr_schedule, steps_per_epoch=steps_per_epoch, total=total, milestones=milestones, gamma=gamma
        ),
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
            batch = images[chosen]
            if augment:
                batch = crop_and_flip(batch, augment_generator)
            loss = F.cross_entropy(model(batch), labels[chosen])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            scheduler.step()
    if images.is_cuda:
        torch.cuda.synchronize(images.device)  # CUDA kernels run asynchronously: wait before timing
    return time.perf_counter() - start


def lr_factor(
    step: int,
    lr_schedule: str,
    *,
    steps_per_epoch: int,
    total: int,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> float:
    """The learning rate of optimizer step ``step`` (0-based) as a multiple of the initial rate.

    cosine: :math:`\\tfrac12 (1 + \\cos(\\pi s / T))` over the ``total`` steps; step:
    :math:`\\gamma^{k}` with :math:`k` the number of milestones at or before the step's epoch
    (torch's ``MultiStepLR`` stepped once per epoch).
    """
    if lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total))
    epoch = step // steps_per_epoch
    return gamma ** sum(epoch >= m for m in milestones)


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
