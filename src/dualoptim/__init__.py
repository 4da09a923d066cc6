"""dualoptim: stable machine unlearning with dual optimizers.

The optimizers import nothing but torch; the unlearning methods, benchmarks, LLM and diffusion
support live in sub-packages that import their own dependencies (install extras) when used.
"""

from dualoptim.optim import AdamW8bit, DualOptim, DualOptimPlus, Objective

__all__ = ["AdamW8bit", "DualOptim", "DualOptimPlus", "Objective"]
__version__ = "0.1.0"
