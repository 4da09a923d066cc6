"""Validation of the parameter argument shared by the optimizers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from dualoptim.optim._objective import Objective


def as_param_groups(params: Iterable[Any], owner: str) -> list[dict[str, Any]]:
    """Normalise ``params`` (tensors or param-group dicts) to a non-empty list of group dicts.

    Each returned dict is a fresh copy with ``params`` as a list, so callers may hand copies to
    several inner optimizers without them sharing one dict.
    """
    if isinstance(params, torch.Tensor):
        raise TypeError(
            f"{owner} params must be an iterable of tensors or of param-group dicts, got a single tensor "
            "(wrap it in a list)"
        )
    items = list(params)
    if not items:
        raise ValueError(f"{owner} got an empty parameter list")
    if all(isinstance(item, dict) for item in items):
        groups = []
        for index, group in enumerate(items):
            if "params" not in group:
                raise ValueError(f"{owner} param group {index} has no 'params' key: {sorted(group)}")
            tensors = group["params"]
            tensors = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
            if not tensors:
                raise ValueError(f"{owner} param group {index} is empty")
            groups.append({**group, "params": tensors})
        return groups
    for index, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            raise TypeError(
                f"{owner} params must all be tensors or all param-group dicts; item {index} is "
                f"{type(item).__name__}"
            )
    return [{"params": items}]


def objective_lr(group: dict[str, Any], objective: Objective) -> float:
    """The learning rate of ``objective``: ``lr`` for retain; for forget ``forget_lr`` scaled by
    whatever a scheduler did to ``lr`` since construction."""
    if objective is Objective.RETAIN:
        return group["lr"]
    initial = group.get("initial_lr", group["lr"])
    if initial == 0:
        return group["forget_lr"]
    return group["forget_lr"] * group["lr"] / initial
