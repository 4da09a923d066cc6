"""Small models and builders for the large ones; training from scratch and checkpoints."""

from dualoptim.models.training import load_checkpoint, save_checkpoint, train_classifier
from dualoptim.models.vision import MODELS, ResNet18, SmallCNN, build_model

__all__ = [
    "MODELS",
    "ResNet18",
    "SmallCNN",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
    "train_classifier",
]
