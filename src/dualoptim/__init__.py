"""dualoptim: stable machine unlearning with dual optimizers.

The shared core: ``optim`` (the optimizers, torch only), ``strategies`` (strategy name ->
optimizer), ``config`` (typed configs, presets, overrides), ``schedule`` (how forget and retain
steps interleave), ``runs`` (run store, provenance, the results envelope), ``metrics`` (shared
metrics and aggregation), ``reports`` (table and plot helpers) and ``cli``. One package per task
imports the core and never another task: ``vision`` (image classification) and ``llm`` (causal
LMs on TOFU). Task packages import their own dependencies (install extras) when used.
"""

from dualoptim.optim import AdamW8bit, DualOptim, DualOptimPlus, DualOptimPlusRef, Objective, SharedState

__all__ = ["AdamW8bit", "DualOptim", "DualOptimPlus", "DualOptimPlusRef", "Objective", "SharedState"]
__version__ = "0.1.0"
