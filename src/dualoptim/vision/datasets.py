"""Image classification data sets as in-memory tensors.

Every loader returns a :class:`ImageData`: float images in ``[N, C, H, W]`` normalised per
channel with statistics of the training images, int64 labels, for a train and a test split. The
data sets used here fit in memory (digits: 1,797 images; Fashion-MNIST: 70,000; CIFAR: 60,000), so
batches are index slices of one tensor, which is much faster on a CPU than a ``DataLoader``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dualoptim.idx import find_idx, read_idx
from dualoptim.paths import default_data_root
from dualoptim.registry import Registry

__all__ = ["DATASETS", "ImageData", "load_dataset"]


@dataclass
class ImageData:
    """Train and test images (normalised) and labels of one data set."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


DATASETS = Registry["callable"]("dataset")


def load_dataset(name: str, data_root: str | Path | None = None) -> ImageData:
    """Load data set ``name`` (see ``DATASETS.names()``) from ``data_root`` (default: shared data)."""
    loader = DATASETS.get(name)
    root = Path(data_root) if data_root is not None else default_data_root()
    return loader(root)


def _normalise(train_x: Tensor, test_x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel standardisation with the training set's mean and std (no test leakage)."""
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (train_x - mean) / std, (test_x - mean) / std


@DATASETS.register("digits")
def load_digits(root: Path) -> ImageData:
    """sklearn's 8x8 handwritten digits (embedded in scikit-learn, no download).

    A fixed, stratified 1,437 / 360 train/test split (seed 0), so every run sees the same sets.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        torch.arange(len(y)).numpy(), test_size=0.2, random_state=0, stratify=y.numpy()
    )
    train_x, test_x = _normalise(x[train_idx], x[test_idx])
    return ImageData("digits", train_x, y[train_idx], test_x, y[test_idx], 10)






@DATASETS.register("fashion-mnist")
def load_fashion_mnist(root: Path) -> ImageData:
    """Fashion-MNIST from the four standard IDX files in ``root/fashion-mnist`` (or ``root``).

    When the folder does not exist and torchvision is installed, torchvision downloads the files.
    """
    folder = root / "fashion-mnist"
    if not folder.is_dir() and (root / "train-images-idx3-ubyte.gz").is_file():
        folder = root
    if not folder.is_dir():
        folder = _torchvision_download_fashion_mnist(root)
    train_x = read_idx(find_idx(folder, "train-images-idx3-ubyte")).float().unsqueeze(1) / 255.0
    train_y = read_idx(find_idx(folder, "train-labels-idx1-ubyte")).long()
    test_x = read_idx(find_idx(folder, "t10k-images-idx3-ubyte")).float().unsqueeze(1) / 255.0
    test_y = read_idx(find_idx(folder, "t10k-labels-idx1-ubyte")).long()
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(f"image and label files in {folder} disagree on the number of examples")
    train_x, test_x = _normalise(train_x, test_x)
    return ImageData("fashion-mnist", train_x, train_y, test_x, test_y, 10)


def _torchvision():
    try:
        import torchvision
    except Exception as error:  # torchvision fails with ImportError or RuntimeError on a torch mismatch
        raise ValueError(
            f"this data set needs torchvision (pip install 'dualoptim[vision]'), which cannot be imported: {error}"
        ) from None
    return torchvision


def _torchvision_download_fashion_mnist(root: Path) -> Path:
    try:
        torchvision = _torchvision()
    except ValueError:
        raise ValueError(
            f"data folder {root / 'fashion-mnist'} does not exist (and torchvision is not available to download it)"
        ) from None
    torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
    torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
    return root / "FashionMNIST" / "raw"


def _torchvision_images(name: str, root: Path, **kinds) -> ImageData:
    """CIFAR-10/100 and SVHN through torchvision (downloaded into ``root`` when missing)."""
    torchvision = _torchvision()
    cls = getattr(torchvision.datasets, kinds.pop("cls"))
    splits = []
    for train in (True, False):
        split_kw = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
        dataset = cls(str(root / name), download=True, **split_kw)
        images = torch.as_tensor(dataset.data)
        if images.shape[-1] == 3:  # CIFAR stores HWC
            images = images.permute(0, 3, 1, 2)
        labels = torch.as_tensor(dataset.labels if name == "svhn" else dataset.targets, dtype=torch.int64)
        splits.append((images.float() / 255.0, labels))
    (train_x, train_y), (test_x, test_y) = splits
    train_x, test_x = _normalise(train_x, test_x)
    return ImageData(name, train_x, train_y, test_x, test_y, int(train_y.max()) + 1)


@DATASETS.register("cifar10")
def load_cifar10(root: Path) -> ImageData:
    """CIFAR-10 via torchvision (optional extra ``vision``)."""
    return _torchvision_images("cifar10", root, cls="CIFAR10")


@DATASETS.register("cifar100")
def load_cifar100(root: Path) -> ImageData:
    """CIFAR-100 via torchvision (optional extra ``vision``)."""
    return _torchvision_images("cifar100", root, cls="CIFAR100")


@DATASETS.register("svhn")
def load_svhn(root: Path) -> ImageData:
    """SVHN via torchvision (optional extra ``vision``)."""
    return _torchvision_images("svhn", root, cls="SVHN")


# ImageNet statistics: the normalisation the Swin-T ImageNet weights were trained with, and the
# papers' TinyImageNet pipeline (transforms.Normalize in their data code).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: test images per class: the papers' code moves the first 25 of each class's 50 official
#: validation images to a validation folder and tests on the other 25.
_TINY_TEST_PER_CLASS = 25


@DATASETS.register("tiny-imagenet")
def load_tiny_imagenet(root: Path) -> ImageData:
    """TinyImageNet-200 (64x64 RGB, 200 classes) from the official folder layout.

    Reads ``root/tiny-imagenet-200`` (or ``root``) as unpacked from ``tiny-imagenet-200.zip``:
    ``wnids.txt``, ``train/<wnid>/images/*.JPEG`` (500 per class) and ``val/images/*.JPEG`` with
    ``val/val_annotations.txt``. Train: every training image. Test: of each class's 50 validation
    images (sorted by file name) the last 25, as in the papers' code, which keeps the first 25 for
    validation. Images are decoded once into one tensor (100,000 x 3 x 64 x 64 floats, 4.9 GB) and
    normalised with ImageNet's mean and std; crops, flips and the resize to 224 happen on the
    device (:mod:`dualoptim.vision.augment`, :class:`dualoptim.vision.models.SwinT`).
    """
    train_files, train_labels, test_files, test_labels, wnids = tiny_imagenet_files(root)
    mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    train_x = (_decode_rgb(train_files) - mean) / std
    test_x = (_decode_rgb(test_files) - mean) / std
    return ImageData(
        "tiny-imagenet", train_x, torch.tensor(train_labels), test_x, torch.tensor(test_labels), len(wnids)
    )


def is_tiny_imagenet(root: Path) -> bool:
    """Whether ``root`` (or ``root/tiny-imagenet-200``) holds the official TinyImageNet layout."""
    return (root / "wnids.txt").is_file() or (root / "tiny-imagenet-200" / "wnids.txt").is_file()


def tiny_imagenet_files(root: Path) -> tuple[list[Path], list[int], list[Path], list[int], list[str]]:
    """Train files and labels, test files and labels, and the class ids (``wnids.txt`` order) of the
    official TinyImageNet folder (see :func:`load_tiny_imagenet` for the layout and the test split)."""
    folder = root / "tiny-imagenet-200"
    if not folder.is_dir() and (root / "wnids.txt").is_file():
        folder = root
    wnids_file = folder / "wnids.txt"
    if not wnids_file.is_file():
        raise ValueError(
            f"TinyImageNet not found: {wnids_file} does not exist (unpack tiny-imagenet-200.zip into {root})"
        )
    wnids = wnids_file.read_text(encoding="utf-8").split()
    classes = {wnid: label for label, wnid in enumerate(wnids)}
    train_files, train_labels = [], []
    for wnid in wnids:
        files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not files:
            raise ValueError(f"no training images in {folder / 'train' / wnid / 'images'}")
        train_files += files
        train_labels += [classes[wnid]] * len(files)
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise ValueError(f"TinyImageNet validation labels not found: {annotations}")
    per_class: dict[str, list[str]] = {}
    for line in annotations.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            if fields[1] not in classes:
                raise ValueError(f"{annotations}: unknown class {fields[1]!r} (not in wnids.txt)")
            per_class.setdefault(fields[1], []).append(fields[0])
    test_files, test_labels = [], []
    for wnid, names in per_class.items():
        kept = sorted(names)[len(names) // 2 :][-_TINY_TEST_PER_CLASS:]  # the second half, at most 25
        test_files += [folder / "val" / "images" / name for name in kept]
        test_labels += [classes[wnid]] * len(kept)
    return train_files, train_labels, test_files, test_labels, wnids


def _decode_rgb(files: list[Path]) -> Tensor:
    """Decode image files of one size into a float ``[N, 3, H, W]`` tensor in [0, 1] (grey images as RGB)."""
    import numpy as np
    from PIL import Image

    arrays = []
    for path in files:
        try:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("RGB")))
        except OSError as error:
            raise ValueError(f"cannot read image {path}: {error}") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images of different sizes {sorted(shapes)[:3]}: resize them to one size first")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
