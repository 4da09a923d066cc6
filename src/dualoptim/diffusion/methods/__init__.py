"""Diffusion unlearning methods: each returns the forget and the retain loss, nothing else.

Importing this package registers every method in :data:`METHODS`.
"""

from dualoptim.diffusion.methods import ga, rl, sa, salun, sfron  # noqa: F401  (registration)
from dualoptim.diffusion.methods.base import METHODS, Batch, Context, Method, build_method

__all__ = ["METHODS", "Batch", "Context", "Method", "build_method"]
