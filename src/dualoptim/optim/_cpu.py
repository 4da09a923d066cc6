r"""Fused CPU kernels (``_cpu_kernels.cpp``), compiled on first use, with a visible pure-torch fallback.

One C++ loop does a whole update per element: the 8-bit paths of :class:`~dualoptim.AdamW8bit`
and :class:`~dualoptim.DualOptimPlus` (de-quantise, update, re-quantise, in one pass over each
256-value block) and ``DualOptimPlus(fused=True)`` on CPU tensors. The plain-torch paths run the
same maths as ~20 (float) to ~80 (8-bit) separate elementwise kernels per chunk; the fused loop
reads and writes every byte of state once.

**Build.** The source is compiled with the system C++ compiler (``$CXX``, else ``c++``/``g++``;
``-O3 -march=native -fopenmp``, see :data:`FLAGS`) into a shared library cached under ``DUALOPTIM_KERNEL_CACHE`` (default
``~/.cache/dualoptim/kernels``), keyed by the source, the compiler and the CPU, and loaded with
``ctypes``: no torch headers, so a build takes a few seconds, and no dependency on torch's C++ ABI.
(A ``torch.utils.cpp_extension`` module would compile pybind11 and torch headers: about a minute.)
Concurrent builds write to temporary names and rename atomically.

**Fallback.** Without a compiler, when the build fails, or with ``DUALOPTIM_CPU_KERNELS=0``, every
optimizer runs its pure-torch path (same maths, slower). :func:`kernel_status` says which, and the
first fallback logs one warning (``logging``, logger ``dualoptim.optim``) with the reason.

The kernels compute in float32 (float64 for float64 parameters of the float update), without
fused multiply-adds (``-ffp-contract=off``: DualOptim+'s residual moments cancel, and a contracted
rounding moved coordinates by 1e-10 in float64 where the literal reference allows 1e-11). Their
operations are ordered as in the torch paths but not identical (``lerp`` forms), so results agree
to rounding, not bit for bit; the 8-bit code and its nearest-entry rule are exactly those of
:mod:`~dualoptim.optim.quant` (tests/optim/test_cpu_kernels.py checks codes bit for bit).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["KernelScalars", "kernel_status", "kernels"]

_LOG = logging.getLogger("dualoptim.optim")
SOURCE = Path(__file__).with_name("_cpu_kernels.cpp")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-fno-math-errno", "-ffp-contract=off", "-std=c++17")


class KernelScalars(ctypes.Structure):
    """The ``Scalars`` struct of ``_cpu_kernels.cpp``: weights ``w = 1 - beta`` and bias corrections
    ``c = 1 / (1 - beta^t)`` of the four moments (0 and 0 for an absent moment), and the guard."""

    _fields_ = [(name, ctypes.c_double) for name in
                ("lr", "weight_decay", "w_b1", "w_b2", "w_d1", "w_d2", "c_b1", "c_b2", "c_d1", "c_d2", "eps")]
    _fields_ += [("guard", ctypes.c_int64)]  # fmt: skip


class _Moment(ctypes.Structure):
    """The ``Moment`` struct: float values, or 8-bit codes + absmax + the code's tables, or absent."""

    _fields_ = [
        ("values", ctypes.c_void_p),
        ("codes", ctypes.c_void_p),
        ("absmax", ctypes.c_void_p),
        ("code", ctypes.c_void_p),
        ("upper", ctypes.c_void_p),
        ("first_guess", ctypes.c_void_p),
    ]


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and (path := shutil.which(name)):
            return path
    return None


def _cache_dir() -> Path:
    if env := os.environ.get("DUALOPTIM_KERNEL_CACHE"):
        return Path(env)
    return Path.home() / ".cache" / "dualoptim" / "kernels"


def _cpu_signature() -> str:
    """The CPU's model and feature flags (``-march=native`` code is only valid on a CPU like this one)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))


def _build(compiler: str) -> Path:
    """The compiled library's path, building it unless a cached build of this source exists."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), compiler, version, " ".join(FLAGS), _cpu_signature()]).encode()
    ).hexdigest()[:16]
    cache = _cache_dir()
    library = cache / f"dualoptim_cpu_kernels_{key}.so"
    if library.exists():
        return library
    cache.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=library.stem, suffix=".so.partial", dir=cache)
    os.close(handle)
    try:
        result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", partial],
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        os.replace(partial, library)  # atomic: a concurrent build or reader sees a whole library
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return library


class _Kernels:
    """The loaded library's functions, typed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lib = ctypes.CDLL(str(path))
        ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        for suffix in ("f32", "f64"):
            finite = getattr(lib, f"dualoptim_all_finite_{suffix}")
            finite.argtypes, finite.restype = [ptr, i64], i32
            update = getattr(lib, f"dualoptim_float_update_{suffix}")
            update.argtypes, update.restype = [i64, *[ptr] * 6, ctypes.POINTER(KernelScalars), i32], None
        quantized = lib.dualoptim_quantized_update
        quantized.argtypes = [i64, ptr, ptr, ctypes.POINTER(_Moment * 4), ctypes.POINTER(KernelScalars), i32]
        quantized.restype = i64
        self._lib = lib

    def all_finite(self, tensor: Tensor) -> bool:
        suffix = "f64" if tensor.dtype == torch.float64 else "f32"
        return bool(getattr(self._lib, f"dualoptim_all_finite_{suffix}")(tensor.data_ptr(), tensor.numel()))

    def float_update(self, param: Tensor, grad: Tensor, moments: list[Tensor], scalars: KernelScalars) -> None:
        """The float DualOptim+/AdamW update of one contiguous tensor (moments: b1, b2, d1, d2)."""
        suffix = "f64" if param.dtype == torch.float64 else "f32"
        getattr(self._lib, f"dualoptim_float_update_{suffix}")(
            param.numel(), param.data_ptr(), grad.data_ptr(), *(m.data_ptr() for m in moments),
            ctypes.byref(scalars), torch.get_num_threads(),
        )  # fmt: skip

    def quantized_update(
        self, param: Tensor, grad: Tensor, moments: list[tuple], scalars: KernelScalars
    ) -> int:
        """The update of one contiguous float32 tensor; ``moments`` (b1, b2, d1, d2) each ``None``
        (absent), a float32 tensor, or ``(codes, absmax, code)`` with a :class:`quant._Code`.
        Returns -1 or the index of a refused (non-finite) block."""
        structs = (_Moment * 4)()
        for struct, moment in zip(structs, moments):
            if isinstance(moment, Tensor):
                struct.values = moment.data_ptr()
            elif moment is not None:
                codes, absmax, code = moment
                struct.codes, struct.absmax = codes.data_ptr(), absmax.data_ptr()
                struct.code, struct.upper = code.values.data_ptr(), code.upper.data_ptr()
                struct.first_guess = code.first_guess.data_ptr()
        return self._lib.dualoptim_quantized_update(
            param.numel(), param.data_ptr(), grad.data_ptr(), ctypes.byref(structs), ctypes.byref(scalars),
            torch.get_num_threads(),
        )  # fmt: skip


@functools.cache
def _load() -> tuple[_Kernels | None, str]:
    if os.environ.get("DUALOPTIM_CPU_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "pure torch: disabled by DUALOPTIM_CPU_KERNELS=0"
    compiler = _compiler()
    if compiler is None:
        reason = "pure torch: no C++ compiler found ($CXX, c++, g++, clang++)"
    else:
        try:
            kernels = _Kernels(_build(compiler))
            return kernels, f"compiled C++ kernels: {kernels.path}"
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            reason = f"pure torch: building {SOURCE.name} failed: {error}"
    _LOG.warning("dualoptim CPU kernels unavailable, the optimizers use their slower %s", reason)
    return None, reason


def kernels() -> _Kernels | None:
    """The compiled kernels, built on the first call; ``None`` where they cannot be (see :func:`kernel_status`)."""
    return _load()[0]


def kernel_status() -> str:
    """Which implementation the CPU 8-bit and ``fused`` paths use, and why: ``"compiled C++ kernels:
    <library>"`` or ``"pure torch: <reason>"``. Builds the kernels if they are not yet built."""
    return _load()[1]


def usable(*tensors: Tensor) -> bool:
    """Whether the compiled kernels can take these tensors: dense, contiguous, on the CPU, and built."""
    for tensor in tensors:
        if tensor.device.type != "cpu" or tensor.layout != torch.strided or not tensor.is_contiguous():
            return False
    return kernels() is not None

