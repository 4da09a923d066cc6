"""Labelled images for class-conditional diffusion: in memory, in [-1, 1], with their class names.

Fashion-MNIST is read from its IDX files (the offline path the CPU preset uses), scikit-learn's
8x8 digits serve the tests; CIFAR-10
and ImageNet go through torchvision (GPU presets). Batches are index slices of one tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dualoptim.idx import find_idx, read_idx
from dualoptim.paths import default_data_root
from dualoptim.registry import Registry

__all__ = ["DATASETS", "LabelledImages", "load_images", "resolve_class"]

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
#: ImageNet images kept per class (the forgotten class and a retain sample)
IMAGENET_PER_CLASS = 100
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class LabelledImages:
    """Training images in [-1, 1] (``[N, C, H, W]``), int64 labels and the name of every class."""

    name: str
    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def of_class(self, label: int) -> Tensor:
        return self.images[self.labels == label]


DATASETS = Registry["callable"]("dataset")


def resolve_class(value: int | str, classes: tuple[str, ...]) -> int:
    """A class given by index or by name (case-insensitive) as its index; anything else is an error."""
    if isinstance(value, bool):
        raise ValueError(f"class {value!r} is neither an index nor a class name")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        index = int(value)
        if not 0 <= index < len(classes):
            raise ValueError(f"class {index} is out of range: the data set has classes 0..{len(classes) - 1}")
        return index
    by_name = {name.lower(): i for i, name in enumerate(classes)}
    if str(value).lower() not in by_name:
        raise ValueError(f"class name {value!r} is not in the data set; valid: {', '.join(classes)}")
    return by_name[str(value).lower()]


def load_images(name: str, root: str | Path | None = None, image_size: int | None = None) -> LabelledImages:
    """Training images of data set ``name`` from ``root`` (default: the shared data), resized to ``image_size``."""
    data = DATASETS.get(name)(Path(root) if root is not None else default_data_root())
    if image_size is not None and data.images.shape[-1] != image_size:
        if image_size < 4:
            raise ValueError(f"image_size must be >= 4, got {image_size}")
        # area averaging when shrinking (no aliasing), bilinear when growing
        mode = "area" if image_size < data.images.shape[-1] else "bilinear"
        data.images = F.interpolate(data.images, size=(image_size, image_size), mode=mode).clamp(-1, 1)
    return data






@DATASETS.register("fashion-mnist")
def load_fashion_mnist(root: Path, test: bool = False) -> LabelledImages:
    """The 60,000 Fashion-MNIST training images (``test``: the 10,000 test images) from ``root/fashion-mnist`` (or ``root``)."""
    folder = root / "fashion-mnist"
    if not folder.is_dir() and (root / "train-images-idx3-ubyte.gz").is_file():
        folder = root
    if not folder.is_dir():
        raise ValueError(f"data folder {folder} does not exist (pass --data with the folder of the IDX files)")
    prefix = "t10k" if test else "train"
    images = read_idx(find_idx(folder, f"{prefix}-images-idx3-ubyte")).float().unsqueeze(1) / 127.5 - 1.0
    labels = read_idx(find_idx(folder, f"{prefix}-labels-idx1-ubyte")).long()
    if len(images) != len(labels):
        raise ValueError(f"image and label files in {folder} disagree on the number of examples")
    return LabelledImages("fashion-mnist", images, labels, FASHION_MNIST_CLASSES)


@DATASETS.register("digits")
def load_digits(root: Path) -> LabelledImages:
    """scikit-learn's 1,797 8x8 handwritten digits (embedded in its wheel: the offline test set)."""
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    return LabelledImages("digits", images, torch.tensor(digits.target, dtype=torch.int64), tuple("0123456789"))


def _torchvision():
    try:
        import torchvision
    except Exception as error:  # an ImportError, or a RuntimeError on a torch mismatch
        raise ValueError(f"this data set needs torchvision, which cannot be imported: {error}") from None
    return torchvision


@DATASETS.register("cifar10")
def load_cifar10(root: Path) -> LabelledImages:
    """The 50,000 CIFAR-10 training images through torchvision (downloaded into ``root/cifar10``)."""
    dataset = _torchvision().datasets.CIFAR10(str(root / "cifar10"), train=True, download=True)
    images = torch.as_tensor(dataset.data).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return LabelledImages("cifar10", images, torch.as_tensor(dataset.targets), CIFAR10_CLASSES)


@DATASETS.register("imagenet")
def load_imagenet(root: Path) -> LabelledImages:
    """ImageNet training images from ``root/imagenet/train/<wnid>/*`` (torchvision's ImageFolder), 256x256.

    The folder must be prepared by the user (ImageNet cannot be downloaded automatically). Classes
    are the sorted synset folders; names come from a ``classes.txt`` beside them when present.
    """
    torchvision = _torchvision()
    folder = root / "imagenet" / "train"
    if not folder.is_dir():
        raise ValueError(f"ImageNet folder {folder} does not exist (one sub-folder of images per synset)")
    transform = torchvision.transforms.Compose([
        torchvision.transforms.Resize(256), torchvision.transforms.CenterCrop(256), torchvision.transforms.PILToTensor(),
    ])  # fmt: skip
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    # Unlearning needs the forgotten class and a retain sample, not 1.28M images in memory.
    kept, seen = [], {}
    for index, (_, label) in enumerate(dataset.samples):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= IMAGENET_PER_CLASS:
            kept.append(index)
    images = torch.stack([dataset[i][0] for i in kept]).float() / 127.5 - 1.0
    labels = torch.as_tensor([dataset.targets[i] for i in kept])
    names_file = folder.parent / "classes.txt"
    names = names_file.read_text().splitlines() if names_file.is_file() else dataset.classes
    return LabelledImages("imagenet", images, labels, tuple(names))
