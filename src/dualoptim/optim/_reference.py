"""Slow, literal implementations of the update rules, for tests only.

Every line is one equation of ``docs/design.md`` §2.3 written with fresh tensors and no in-place tricks, so
that the fast paths in ``plus.py`` can be compared against it step by step in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ReferenceMoments:
    step: int = 0
    first: Tensor | None = None
    second: Tensor | None = None


@dataclass
class ReferenceDualOptimPlus:
    """DualOptim+ on a list of tensors, one objective's gradients at a time."""

    params: list[Tensor]
    lr: float
    forget_lr: float
    betas: tuple[float, float, float, float]
    eps: float = 1e-8
    weight_decay: float = 0.0
    base: list[ReferenceMoments] = field(default_factory=list)
    delta: dict[str, list[ReferenceMoments]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def fresh(p: Tensor) -> ReferenceMoments:
            return ReferenceMoments(0, torch.zeros_like(p), torch.zeros_like(p))

        self.base = [fresh(p) for p in self.params]
        self.delta = {o: [fresh(p) for p in self.params] for o in ("forget", "retain")}

    def step(self, grads: list[Tensor | None], objective: str) -> None:
        beta_d1, beta_d2, beta_b1, beta_b2 = self.betas
        lr = self.forget_lr if objective == "forget" else self.lr
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is None:
                continue
            base, delta = self.base[i], self.delta[objective][i]
            theta = p * (1 - lr * self.weight_decay)
            base.step += 1
            delta.step += 1
            n, k = base.step, delta.step
            zero = torch.zeros_like(p)
            if beta_b1 < 1:
                base.first = beta_b1 * base.first + (1 - beta_b1) * g
                base_m = base.first / (1 - beta_b1**n)
            else:
                base_m = zero
            if beta_b2 < 1:
                base.second = beta_b2 * base.second + (1 - beta_b2) * g * g
                base_v = base.second / (1 - beta_b2**n)
            else:
                base_v = zero
            if beta_d1 < 1:
                delta.first = beta_d1 * delta.first + (1 - beta_d1) * (g - base_m)
                delta_m = delta.first / (1 - beta_d1**k)
            else:
                delta_m = zero
            if beta_d2 < 1:
                delta.second = beta_d2 * delta.second + (1 - beta_d2) * (g * g - base_v)
                delta_v = delta.second / (1 - beta_d2**k)
            else:
                delta_v = zero
            m = base_m + delta_m
            v = base_v + delta_v
            if (beta_b1 < 1 or beta_b2 < 1) and (beta_d1 < 1 or beta_d2 < 1):
                v = torch.maximum(v, m * m)
            p.copy_(theta - lr * m / (torch.sqrt(v) + self.eps))


@dataclass
class ReferenceDualOptimPlusOfficial:
    """DualOptim+ as the official code steps it (``adam_decouple_plus_step`` of CityU-MLO/DualOptimPlus),
    one equation a line with fresh tensors: the literal reference of :class:`~dualoptim.optim.plus_ref.DualOptimPlusRef`."""

    params: list[Tensor]
    lr: float
    forget_lr: float
    betas: tuple[float, float, float, float]
    eps: float = 1e-8
    weight_decay: float = 0.0
    base: list[ReferenceMoments] = field(default_factory=list)
    delta: dict[str, list[ReferenceMoments]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def fresh(p: Tensor) -> ReferenceMoments:
            return ReferenceMoments(0, torch.zeros_like(p), torch.zeros_like(p))

        self.base = [fresh(p) for p in self.params]
        self.delta = {o: [fresh(p) for p in self.params] for o in ("forget", "retain")}

    def step(self, grads: list[Tensor | None], objective: str) -> None:
        beta_d1, beta_d2, beta_b1, beta_b2 = self.betas
        lr = self.forget_lr if objective == "forget" else self.lr
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is None:
                continue
            base, delta = self.base[i], self.delta[objective][i]
            theta = p * (1 - lr * self.weight_decay)
            base.step += 1
            delta.step += 1
            n, k = base.step, delta.step
            # the base before this step: corrected for the n - 1 steps it has seen
            base_m = base.first / (1 - beta_b1 ** (n - 1)) if n > 1 else base.first
            base_v = base.second / (1 - beta_b2 ** (n - 1)) if n > 1 else base.second
            delta.first = beta_d1 * delta.first + (1 - beta_d1) * (g - base_m)
            delta.second = beta_d2 * delta.second + (1 - beta_d2) * (g * g - base_v)
            m = delta.first / (1 - beta_d1**k) + base_m
            v = delta.second / (1 - beta_d2**k) + base_v
            p.copy_(theta - lr * m / (torch.sqrt(torch.abs(v)) + self.eps))
            base.first = beta_b1 * base.first + (1 - beta_b1) * g
            base.second = beta_b2 * base.second + (1 - beta_b2) * g * g
