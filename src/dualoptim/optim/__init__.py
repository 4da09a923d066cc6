"""The optimizers: DualOptim (one state per objective) and DualOptim+ (shared base + residuals),
with block-wise 8-bit states (``AdamW8bit``, ``DualOptimPlus(quantize_base=..., quantize_delta=...)``)."""

from dualoptim.optim._objective import Objective, ObjectiveMixin
from dualoptim.optim.adam8bit import AdamW8bit, float_state_dict
from dualoptim.optim.dual import DualOptim
from dualoptim.optim.plus import DualOptimPlus, dual_optim_plus

__all__ = [
    "AdamW8bit",
    "DualOptim",
    "DualOptimPlus",
    "Objective",
    "ObjectiveMixin",
    "dual_optim_plus",
    "float_state_dict",
]
