"""Pre-training of the class-conditional denoiser (the original model) and of the project's classifier."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.diffusion.models import EMA
from dualoptim.diffusion.process import Diffusion
from dualoptim.errors import NonFiniteLoss

__all__ = ["Classifier", "pretrain_denoiser", "train_classifier"]


def pretrain_denoiser(
    model: nn.Module,
    diffusion: Diffusion,
    images: Tensor,
    labels: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    ema_decay: float,
    cond_drop: float,
    seed: int,
    progress_bar: bool = False,
) -> tuple[nn.Module, float]:
    """Train ``model`` on the noise loss with condition dropout; return its EMA copy and the seconds taken.

    Adam with a linear warm-up over the first 5% of steps; the EMA weights are what is sampled from
    and unlearned (as in the reference DDPM code).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    ema = EMA(model, ema_decay)
    start = time.perf_counter()
    iterator = range(steps)
    if progress_bar:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="pretrain denoiser", unit="step")
    model.train()
    for step in iterator:
        chosen = torch.randint(0, len(labels), (batch_size,), generator=generator)
        x, y = images[chosen], labels[chosen]
        loss = diffusion.noise_losses(model, x, y, cond_drop=cond_drop, generator=generator).mean()
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"pre-training loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        ema.update(model)
        if progress_bar and step % 50 == 0:
            iterator.set_postfix(loss=f"{loss.item():.2f}")
    return ema.model, time.perf_counter() - start


class Classifier(nn.Module):
    """A small CNN classifier of the generated images; :meth:`features` are its penultimate activations (FD)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(4 * width, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def train_classifier(
    model: Classifier, images: Tensor, labels: Tensor, *, epochs: int, lr: float, batch_size: int, seed: int = 0
) -> float:
    """Train on the real images (random flips are not used: they would change the classes' shapes); return seconds."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    total = epochs * math.ceil(len(labels) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for begin in range(0, len(labels), batch_size):
            chosen = order[begin : begin + batch_size]
            loss = F.cross_entropy(model(images[chosen]), labels[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    return time.perf_counter() - start
