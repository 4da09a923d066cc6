r"""Block-wise 8-bit storage of optimizer moments (plain torch: runs on the CPU and on a GPU).

A moment tensor :math:`x` is cut into blocks of :data:`BLOCK_SIZE` (256) values. Each block keeps
its absolute maximum :math:`a = \max |x_i|` in float32 and each value the index (one byte) of the
nearest entry of a fixed 256-entry *dynamic* code :math:`c` of numbers in [-1, 1]:

.. math::
    q_i = \operatorname{argmin}_j |x_i / a - c_j|, \qquad \tilde x_i = a\, c_{q_i}

The code is non-linear, dense near zero and sparse near one: a sign (signed codes only), then
decades :math:`10^{-d}` with linearly spaced fractions in each, more of them in the larger
decades. Optimizer moments span orders of magnitude inside a block, which a linear code would
flush to zero. First moments and every residual (delta) state can be negative and use the signed
code (7 decades, relative resolution ~1.5% in the top one); second moments of Adam and the base
are non-negative and use the unsigned code (8 decades, ~0.7%). Tensors with fewer than
:data:`MIN_QUANTIZED_NUMEL` (4,096) elements stay float32: their memory is negligible and they are
often the most sensitive (biases, norms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "BLOCK_SIZE",
    "MIN_QUANTIZED_NUMEL",
    "Quantized",
    "dequantize",
    "dynamic_code",
    "quantize",
    "should_quantize",
]

BLOCK_SIZE = 256
MIN_QUANTIZED_NUMEL = 4096
#: Elements per chunk of an 8-bit update (a multiple of BLOCK_SIZE): the de-quantised float moments
#: of one chunk are temporaries, so memory stays bounded for huge tensors. CPUs want chunks that
#: stay in cache; GPUs want few, large kernels.
CPU_CHUNK_ELEMENTS = 1 << 16
ACCELERATOR_CHUNK_ELEMENTS = 1 << 24


def chunk_elements(device: torch.device) -> int:
    return CPU_CHUNK_ELEMENTS if device.type == "cpu" else ACCELERATOR_CHUNK_ELEMENTS


def _decade_values(counts: list[int]) -> list[float]:
    """Positive code values: decade ``d`` (largest first, 10^0 then 10^-1, ...) holds ``counts[d]``
    values at the midpoints of ``counts[d]`` equal steps of [0.1, 1] * 10^-d."""
    values = []
    for decade, count in enumerate(counts):
        edges = torch.linspace(0.1, 1.0, count + 1, dtype=torch.float64)
        values += ((edges[:-1] + edges[1:]) / 2 * 10.0**-decade).tolist()
    return values


def dynamic_code(signed: bool) -> Tensor:
    """The sorted 256-entry float32 code. Exact 0 and exact ±1 (the block maximum) are entries."""
    if signed:
        # 63 + 32 + ... + 1 = 126 positive midpoints, mirrored, plus 0, +1 and -1: 255 values; a
        # second 0 fills the byte (a duplicate entry costs nothing but one unused index).
        positive = _decade_values([63, 32, 16, 8, 4, 2, 1])
        values = positive + [-x for x in positive] + [0.0, 0.0, 1.0, -1.0]
    else:
        # 127 + 64 + ... + 1 = 254 midpoints over 8 decades, plus 0 and 1.
        values = _decade_values([127, 64, 32, 16, 8, 4, 2, 1]) + [0.0, 1.0]
    assert len(values) == 256
    return torch.tensor(sorted(values), dtype=torch.float32)


@dataclass(frozen=True)
class _Code:
    """A code with what nearest-entry search needs (see :func:`_nearest_entry`)."""

    values: Tensor  # the 256 sorted entries
    upper: Tensor  # upper[i]: midpoint between entries i and i+1 (+inf after the last)
    first_guess: Tensor  # nearest entry of the lowest value of each 17-bit float prefix (int32)


_PREFIX_SHIFT = 15  # a float32 prefix keeps sign, exponent and 8 mantissa bits: 0.4% wide buckets
_CODES: dict[tuple[bool, torch.device], _Code] = {}


def _code(signed: bool, device: torch.device) -> _Code:
    """The code of ``signed`` on ``device`` with its search tables, built once."""
    key = (signed, device)
    if key not in _CODES:
        values = dynamic_code(signed)
        midpoints = (values[1:] + values[:-1]) / 2
        prefixes = torch.arange(1 << (32 - _PREFIX_SHIFT), dtype=torch.int64)
        negative = prefixes >= 1 << (31 - _PREFIX_SHIFT)
        low_bits = (1 << _PREFIX_SHIFT) - 1
        # The lowest value of a bucket: low bits 0 for positive floats, all ones for negative ones.
        lowest = ((prefixes << _PREFIX_SHIFT) | torch.where(negative, low_bits, 0)).to(torch.int64)
        highest = ((prefixes << _PREFIX_SHIFT) | torch.where(negative, 0, low_bits)).to(torch.int64)
        as_float = lambda bits: (bits - (bits >= 1 << 31) * (1 << 32)).to(torch.int32).view(torch.float32)  # noqa: E731
        low_value, high_value = as_float(lowest), as_float(highest)
        finite = torch.isfinite(low_value) & torch.isfinite(high_value)
        first = torch.bucketize(torch.where(finite, low_value, 0.0), midpoints)
        last = torch.bucketize(torch.where(finite, high_value, 0.0), midpoints)
        # The two-step search below is exact only if no bucket straddles two midpoints.
        assert int((last - first).max()) <= 1, "code entries closer than the float prefix buckets"
        _CODES[key] = _Code(
            values.to(device),
            torch.cat([midpoints, torch.tensor([float("inf")])]).to(device),
            first.to(torch.int32).to(device),
        )
    return _CODES[key]


def code_tables(signed: bool, device: torch.device) -> _Code:
    """The code of ``signed`` with its search tables (what the compiled CPU kernels read)."""
    return _code(signed, device)


def _nearest_entry(normalised: Tensor, code: _Code) -> Tensor:
    """Index (uint8) of the nearest code entry for each value (ties go down), as ``torch.bucketize``
    would give, in a few elementwise passes: the float's top 17 bits select a bucket whose lowest
    value's nearest entry is precomputed; at most one midpoint lies inside a bucket, so one
    comparison with that entry's upper midpoint finishes the search."""
    prefix = normalised.contiguous().view(torch.int32).bitwise_right_shift(_PREFIX_SHIFT)
    prefix = prefix.bitwise_and((1 << (32 - _PREFIX_SHIFT)) - 1)  # the arithmetic shift kept the sign
    guess = code.first_guess.index_select(0, prefix.view(-1))
    above = normalised.view(-1) > code.upper.index_select(0, guess)
    # Add in uint8 (a bool tensor is one byte of 0/1): the fastest form of `guess + above`.
    return guess.to(torch.uint8).add_(above.view(torch.uint8)).view(normalised.shape)


@dataclass
class Quantized:
    """An 8-bit tensor: one byte per value (``codes``, the tensor's shape) and one float32
    ``absmax`` per block of 256 values, plus which code it uses."""

    codes: Tensor
    absmax: Tensor
    signed: bool

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def nbytes(self) -> int:
        return (
            self.codes.numel() * self.codes.element_size() + self.absmax.numel() * self.absmax.element_size()
        )


def should_quantize(tensor: Tensor) -> bool:
    """Whether a state of this parameter is kept in 8 bits (floating point, >= 4,096 elements)."""
    return tensor.is_floating_point() and tensor.numel() >= MIN_QUANTIZED_NUMEL


def _blocks(flat: Tensor) -> Tensor:
    """View ``flat`` as rows of BLOCK_SIZE, zero-padding the last block."""
    pad = (-flat.numel()) % BLOCK_SIZE
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return flat.view(-1, BLOCK_SIZE)


def quantize(tensor: Tensor, signed: bool, out: Quantized | None = None, name: str = "tensor") -> Quantized:
    """Quantize ``tensor`` block-wise (into ``out``'s buffers when given). With the unsigned code
    negative values (which no second moment has) map to 0.

    Raises ``FloatingPointError`` naming ``name`` and the block if a block holds a non-finite
    value: its absmax would turn every value of the block into NaN, silently. ``out`` is left
    unchanged in that case.
    """
    blocks = _blocks(tensor.detach().reshape(-1).float())
    absmax = blocks.abs().amax(dim=1)
    if not torch.isfinite(absmax).all():
        bad = int((~torch.isfinite(absmax)).nonzero()[0])
        raise FloatingPointError(
            f"{name} has a non-finite value in block {bad} (elements {bad * BLOCK_SIZE}..{(bad + 1) * BLOCK_SIZE - 1}); "
            "refusing to quantize it, which would turn the whole block into NaN"
        )
    # An all-zero block divides by 1 instead of 0: every value maps to the code's 0.
    normalised = blocks / torch.where(absmax > 0, absmax, torch.ones_like(absmax)).unsqueeze(1)
    indices = _nearest_entry(normalised, _code(signed, tensor.device))
    codes = indices.view(-1)[: tensor.numel()].view(tensor.shape)
    if out is None:
        return Quantized(codes.clone(), absmax, signed)
    out.codes.copy_(codes)
    out.absmax.copy_(absmax)
    return out


def dequantize(quantized: Quantized) -> Tensor:
    """The float32 tensor that ``quantized`` stands for."""
    code = _code(quantized.signed, quantized.codes.device).values
    values = code.index_select(0, quantized.codes.reshape(-1).int())
    blocks = _blocks(values) * quantized.absmax.unsqueeze(1)
    return blocks.view(-1)[: quantized.codes.numel()].view(quantized.shape)


def empty_quantized(like: Tensor, signed: bool) -> Quantized:
    """An all-zero 8-bit tensor of ``like``'s shape and device."""
    zero_index = int(torch.nonzero(_code(signed, like.device).values == 0)[0])
    blocks = -(-like.numel() // BLOCK_SIZE)
    return Quantized(
        torch.full(like.shape, zero_index, dtype=torch.uint8, device=like.device),
        torch.zeros(blocks, dtype=torch.float32, device=like.device),
        signed,
    )


# --- Moments kept in an optimizer's state dict ------------------------------------------------
# A moment named ``name`` (``exp_avg``, ``exp_avg_sq``) is either one float tensor ``part[name]``
# or, when quantized, the codes ``part[name]`` (uint8, the parameter's shape) plus
# ``part[name + "_absmax"]`` (float32, one per block). Plain tensors keep ``state_dict`` working.

ABSMAX_SUFFIX = "_absmax"


LOW_PRECISION = (torch.bfloat16, torch.float16)


def state_dtype(param: Tensor) -> torch.dtype:
    """Float state dtype policy: the parameter's dtype, float32 for bf16/fp16 parameters."""
    return torch.float32 if param.dtype in LOW_PRECISION else param.dtype


def compute_dtype(param: Tensor) -> torch.dtype:
    """float64 for float64 parameters, else float32 (bf16/fp16 updates are computed in float32)."""
    return torch.float64 if param.dtype == torch.float64 else torch.float32


def is_quantized(part: dict[str, Tensor], name: str) -> bool:
    return name + ABSMAX_SUFFIX in part


def init_moment(part: dict[str, Tensor], name: str, param: Tensor, quantized: bool, signed: bool) -> None:
    """Add a zero moment to ``part``: 8-bit when ``quantized``, else float (contiguous)."""
    if quantized:
        q = empty_quantized(param, signed)
        part[name], part[name + ABSMAX_SUFFIX] = q.codes, q.absmax
    else:
        part[name] = torch.zeros(param.shape, dtype=state_dtype(param), device=param.device)


def read_moment(
    part: dict[str, Tensor], name: str, signed: bool, start: int, end: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    """A ``dtype`` copy of flat elements ``start:end`` (``start`` a multiple of BLOCK_SIZE)."""
    flat = part[name].reshape(-1)[start:end]
    if not is_quantized(part, name):
        return flat.to(dtype, copy=True)
    absmax = part[name + ABSMAX_SUFFIX][start // BLOCK_SIZE : -(-end // BLOCK_SIZE)]
    return dequantize(Quantized(flat, absmax, signed)).to(dtype)


def encode_moment(
    part: dict[str, Tensor], name: str, value: Tensor, signed: bool, label: str
) -> Tensor | Quantized:
    """What ``store_moment`` writes: ``value`` itself, or its 8-bit form (raising on non-finite blocks)."""
    return quantize(value, signed, name=f"{label}.{name}") if is_quantized(part, name) else value


def store_moment(
    part: dict[str, Tensor], name: str, start: int, end: int, encoded: Tensor | Quantized
) -> None:
    target = part[name].view(-1)[start:end]
    if isinstance(encoded, Quantized):
        target.copy_(encoded.codes)
        part[name + ABSMAX_SUFFIX][start // BLOCK_SIZE : -(-end // BLOCK_SIZE)].copy_(encoded.absmax)
    else:
        target.copy_(encoded)


def convert_moment(
    saved: dict[str, Tensor], name: str, param: Tensor, quantized: bool, signed: bool, label: str
) -> dict[str, Tensor]:
    """Load moment ``name`` from a saved state part into the representation this optimizer uses:
    8-bit states load into float optimizers (dequantized) and float states into 8-bit ones."""
    if name not in saved:
        raise ValueError(f"{label}: missing state {name!r} (has {sorted(saved)})")
    value = saved[name]
    if tuple(value.shape) != tuple(param.shape):
        raise ValueError(f"{label}.{name} has shape {tuple(value.shape)}, the parameter {tuple(param.shape)}")
    if is_quantized(saved, name):
        if value.dtype != torch.uint8:
            raise ValueError(f"{label}.{name}: 8-bit codes must be uint8, got {value.dtype}")
        absmax = saved[name + ABSMAX_SUFFIX].to(device=param.device, dtype=torch.float32)
        if absmax.numel() != -(-value.numel() // BLOCK_SIZE):
            raise ValueError(
                f"{label}.{name}{ABSMAX_SUFFIX} has {absmax.numel()} blocks, expected {-(-value.numel() // BLOCK_SIZE)}"
            )
        stored = Quantized(value.to(param.device), absmax, signed)
        if quantized:
            return {name: stored.codes.clone(), name + ABSMAX_SUFFIX: stored.absmax.clone()}
        return {name: dequantize(stored).to(state_dtype(param))}
    if not value.is_floating_point():
        raise ValueError(f"{label}.{name} must be a float tensor, got {value.dtype}")
    value = value.to(device=param.device)
    if quantized:
        q = quantize(value, signed, name=f"{label}.{name}")
        return {name: q.codes, name + ABSMAX_SUFFIX: q.absmax}
    return {name: value.to(state_dtype(param)).contiguous().clone()}
