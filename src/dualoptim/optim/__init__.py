"""The optimizers: DualOptim (one state per objective) and DualOptim+ (shared base + residuals)."""

from dualoptim.optim._objective import Objective
from dualoptim.optim.dual import DualOptim
from dualoptim.optim.plus import DualOptimPlus, dual_optim_plus

__all__ = ["DualOptim", "DualOptimPlus", "Objective", "dual_optim_plus"]
