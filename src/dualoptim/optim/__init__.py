"""The optimizers: DualOptim (one state per objective), DualOptim+ (shared base + residuals; and
DualOptimPlusRef, DualOptim+ as the reference code steps it) and
SharedState (one state, a learning rate per objective: ``alternate`` and ``alternate-2lr``), with block-wise
8-bit states (``AdamW8bit``, ``DualOptimPlus(quantize_base=..., quantize_delta=...)``).

This package imports nothing but torch.
"""

from dualoptim.optim._cpu import kernel_status
from dualoptim.optim._objective import Objective, ObjectiveMixin
from dualoptim.optim.adam8bit import AdamW8bit, float_state_dict
from dualoptim.optim.dual import DualOptim
from dualoptim.optim.plus import DualOptimPlus, dual_optim_plus
from dualoptim.optim.plus_ref import DualOptimPlusRef
from dualoptim.optim.shared import SharedState

__all__ = [
    "AdamW8bit",
    "DualOptim",
    "DualOptimPlus",
    "DualOptimPlusRef",
    "Objective",
    "ObjectiveMixin",
    "SharedState",
    "dual_optim_plus",
    "float_state_dict",
    "kernel_status",
]
