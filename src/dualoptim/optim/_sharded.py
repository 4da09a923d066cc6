"""Parameters sharded by FSDP2 (``torch.distributed.fsdp.fully_shard``): DTensors, stepped shard by shard.

Every update of this package is elementwise (each coordinate reads only its own gradient and
state), so a rank that updates its shard of a parameter with the same shard of the gradient and
of the state computes exactly its part of the unsharded update. The optimizers therefore keep
float moments of a sharded parameter as DTensors with the parameter's placements (created with
``zeros_like``, so that ``state_dict`` holds sharded tensors) and hand the math the local shards
(``to_local()`` shares storage: in-place updates land in the DTensor). 8-bit moments are
quantised per rank over the local shard (their absmax blocks are blocks of the shard) and stored
as plain tensors: they are per-rank state, saved and loaded with the same sharding.
``docs/design.md`` §2.7.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dualoptim.optim.quant import init_moment, state_dtype

__all__ = ["init_sharded_moment", "is_sharded", "local", "local_part"]


def is_sharded(tensor: Any) -> bool:
    """Whether ``tensor`` is a DTensor (a parameter, gradient or state of a ``fully_shard``-ed model)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - a torch built without distributed
        return False
    return isinstance(tensor, DTensor)


def local(tensor: Tensor) -> Tensor:
    """This rank's shard of a DTensor (sharing its storage); any other tensor as it is."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def local_part(part: dict[str, Tensor]) -> dict[str, Tensor]:
    """A state part whose DTensors are replaced by their local shards (the same storage)."""
    return {name: local(value) for name, value in part.items()}


def init_sharded_moment(part: dict[str, Tensor], name: str, param: Tensor, quantized: bool, signed: bool) -> None:
    """:func:`dualoptim.optim.quant.init_moment`, with a sharded parameter's float moment a DTensor
    of the same placements and its 8-bit moment the codes of the local shard."""
    if not is_sharded(param):
        init_moment(part, name, param, quantized, signed)
    elif quantized:
        init_moment(part, name, local(param), quantized, signed)
    else:
        part[name] = torch.zeros_like(param, dtype=state_dtype(param))
