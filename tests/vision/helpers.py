"""Tiny models and a memorisation task shared by the vision tests."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """An MLP with batch norm, big enough to memorise a few dozen random labels."""

    def __init__(self, features: int = 16, classes: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))


def memorised_task(seed: int = 0, n: int = 96, forget: int = 16):
    """Random inputs with random labels, memorised by a trained TinyNet.

    Nothing generalises from the retain set to the forget set here, so the forget accuracy of a
    successful unlearning run must fall while the retain accuracy stays high.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=generator)
    y = torch.randint(0, 4, (n,), generator=generator)
    torch.manual_seed(seed)
    model = TinyNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    return model, (x[:forget], y[:forget]), (x[forget:], y[forget:])


def accuracy(model: nn.Module, data) -> float:
    model.eval()
    with torch.no_grad():
        return 100.0 * (model(data[0]).argmax(1) == data[1]).float().mean().item()
