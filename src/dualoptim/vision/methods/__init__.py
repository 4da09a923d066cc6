"""Unlearning methods: each returns the forget and the retain loss, nothing else.

Importing this package registers every method in :data:`METHODS`.
"""

from dualoptim.vision.methods import ft, ga, neggrad, retrain, rl, salun, scrub, sfron  # noqa: F401  (registration)
from dualoptim.vision.methods.base import METHODS, Batch, Mask, Method, build_method

__all__ = ["METHODS", "Batch", "Mask", "Method", "build_method"]
