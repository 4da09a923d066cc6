"""IDX files (the MNIST / Fashion-MNIST format), read by every task that trains on those images."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["find_idx", "read_idx"]


def find_idx(folder: Path, stem: str) -> Path:
    """``folder/stem.gz`` or ``folder/stem``, whichever exists; an error naming both otherwise."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise ValueError(f"missing {stem}[.gz] in data folder {folder}")


def read_idx(path: Path) -> Tensor:
    """Read one (optionally gzipped) IDX file of unsigned bytes into a uint8 tensor.

    The header is two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions n,
    then n big-endian uint32 sizes; the body must hold exactly their product of bytes.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read IDX file {path}: {error}") from error
    if len(raw) < 4:
        raise ValueError(f"{path} is not an IDX file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(torch.tensor(shape).prod())
    if len(raw) != expected:
        raise ValueError(f"{path} is truncated or corrupt: {len(raw)} bytes, header says {expected}")
    data = torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8)
    return data.reshape(shape)
