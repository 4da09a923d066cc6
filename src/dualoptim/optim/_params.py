"""Validation of the parameter argument and of group options, and state-dict helpers, shared by the optimizers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

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


def check_non_negative(name: str, value: Any, owner: str) -> None:
    """A ``ValueError`` naming ``name`` unless ``value`` is a real number >= 0 (NaN is refused)."""
    if isinstance(value, (bool, torch.Tensor)) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{owner}: invalid {name} {value!r}, expected a float >= 0")


#: Group options whose meaning is the same in every torch optimizer that has them: a value >= 0.
NON_NEGATIVE_OPTIONS = ("lr", "weight_decay", "eps", "momentum")


def check_inner_group_options(group: dict[str, Any], owner: str) -> None:
    """Check the common options a param group overrides for an inner torch optimizer.

    torch validates only its constructor's defaults, so a group's ``lr=-1`` or ``weight_decay=-1``
    would be taken silently. Options that are not plain numbers (tensor learning rates, tuple
    ``eps`` of Adafactor, ...) are left to the inner optimizer.
    """
    for name in NON_NEGATIVE_OPTIONS:
        value = group.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check_non_negative(name, value, owner)
    betas = group.get("betas")
    if isinstance(betas, (tuple, list)) and all(isinstance(b, (int, float)) for b in betas):
        if not all(0.0 <= b <= 1.0 for b in betas):
            raise ValueError(f"{owner}: invalid betas {tuple(betas)!r}, expected values in [0, 1]")


def load_unaliased(optimizer: Optimizer, state_dict: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state_dict)`` without sharing memory with ``state_dict``.

    torch's loader keeps a saved state tensor as it is when its dtype and device already fit, so
    an optimizer loaded from another live optimizer's ``state_dict()`` would step the other's
    buffers too. Tensors that alias the saved ones are cloned (the others are already copies).
    """
    optimizer.load_state_dict(state_dict)
    saved = {
        _storage(value)
        for state in state_dict.get("state", {}).values()
        if isinstance(state, dict)
        for value in state.values()
        if isinstance(value, torch.Tensor)
    }
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and _storage(value) in saved:
                state[key] = value.clone()


def _storage(tensor: torch.Tensor) -> int:
    """Address of a tensor's storage; of its local shard for a DTensor (FSDP2), which has none itself."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.untyped_storage().data_ptr()
