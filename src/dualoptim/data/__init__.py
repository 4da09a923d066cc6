"""Data sets and forget/retain splits."""

from dualoptim.data.datasets import DATASETS, ImageData, load_dataset
from dualoptim.data.splits import Split, make_split, read_indices

__all__ = ["DATASETS", "ImageData", "Split", "load_dataset", "make_split", "read_indices"]
