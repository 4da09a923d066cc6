"""Image data a user brings, streamed through ``DataLoader``\\ s: where examples come from and how
they are read, batched and sampled.

A :class:`Samples` is an indexed collection of labelled images, each with a stable *id* that a
deletion request names: the index in the training split for the embedded and IDX sets
(``"17"``), the relative path for an image folder (``"cat/0001.png"``) or a CSV
(the ``path`` column as written). :func:`open_samples` reads

- ``digits`` / ``fashion-mnist``: the embedded sets (the held-out set is their test split);
- a folder holding IDX files (``train-images-idx3-ubyte[.gz]`` ...), read like Fashion-MNIST;
- a CSV file of ``path,label`` rows (paths relative to the CSV's folder);
- an image folder with one sub-folder per class;
- the official TinyImageNet folder (``wnids.txt``, ``train/``, ``val/``), with its test split.

Files are decoded one at a time in the ``DataLoader``'s workers, so a folder far larger than
memory streams. A :class:`LoaderSource` is a subset of a :class:`Samples` placed on a device: it
streams shuffled batches to the unlearning loop (a :class:`~dualoptim.vision.loop.Source`),
evaluation batches, and small random samples.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from dualoptim.vision.datasets import is_tiny_imagenet, load_dataset, load_fashion_mnist, tiny_imagenet_files
from dualoptim.vision.transforms import AugmentedImages, TrainAugment
from dualoptim.vision.types import Batch

__all__ = [
    "EMBEDDED",
    "IMAGE_SUFFIXES",
    "ImageFiles",
    "ImageTransform",
    "LoaderSource",
    "LoaderStream",
    "Samples",
    "TensorImages",
    "in_memory",
    "open_samples",
    "subset_indices",
]

EMBEDDED = ("digits", "fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class ImageTransform:
    """File -> normalised float tensor [C, H, W]: convert to ``channels``, resize to ``size``, standardise."""

    channels: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, path: Path) -> Tensor:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image = image.convert("L" if self.channels == 1 else "RGB")
                if image.size != (self.size[1], self.size[0]):
                    image = image.resize((self.size[1], self.size[0]), Image.BILINEAR)
                pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        except Exception as error:  # PIL raises many kinds: OSError, SyntaxError, ValueError, ...
            raise ValueError(f"cannot decode image {path}: {type(error).__name__}: {error}") from None
        x = pixels.reshape(self.size[0], self.size[1], self.channels).permute(2, 0, 1).float() / 255.0
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (x - mean) / std


class TensorImages(Dataset):
    """Images already in memory (the embedded and IDX sets)."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, Tensor]]:
        chosen = torch.as_tensor(indices)
        return list(zip(self.images[chosen], self.labels[chosen]))


class ImageFiles(Dataset):
    """Image files decoded on demand (in the loader's workers): only paths and labels stay in memory."""

    def __init__(self, paths: Sequence[Path], labels: Tensor, transform: ImageTransform) -> None:
        self.paths, self.labels, self.transform = list(paths), labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.paths[index]), self.labels[index]


@dataclass
class Samples:
    """Labelled images with ids: ``dataset[i]`` is (image, label) of ``ids[i]``."""

    ids: list[str]
    labels: Tensor
    dataset: Dataset
    #: class names in label order, when the data names them
    classes: list[str] | None
    #: what the data is, for the audit ("fashion-mnist train split", a path)
    description: str

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        return {sample_id: i for i, sample_id in enumerate(self.ids)}

    def restrict(self, indices: Tensor, description: str) -> Samples:
        """Only the examples at ``indices`` (their ids unchanged): the part a model was trained on."""
        chosen = indices.tolist()
        return Samples([self.ids[i] for i in chosen], self.labels[indices], Subset(self.dataset, chosen),
                       self.classes, description)  # fmt: skip


def _tensor_samples(images: Tensor, labels: Tensor, description: str, classes: list[str] | None) -> Samples:
    return Samples([str(i) for i in range(len(labels))], labels, TensorImages(images, labels), classes, description)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def subset_indices(size: int, limit: int) -> Tensor:
    """The fixed random subset of ``limit`` of ``size`` examples that ``dualoptim train --subset`` and
    ``dualoptim bench``'s ``train_subset`` use (seed 12345, sorted)."""
    if not 0 < limit <= size:
        raise ValueError(f"subset must be in [1, {size}], got {limit}")
    generator = torch.Generator().manual_seed(12345)
    return torch.sort(torch.randperm(size, generator=generator)[:limit]).values


def _is_idx_folder(path: Path) -> bool:
    return path.is_dir() and any((path / f"train-images-idx3-ubyte{s}").is_file() for s in ("", ".gz"))


def in_memory(spec: str) -> bool:
    """Whether data ``spec`` is read into memory whole (embedded and IDX sets) rather than streamed from files."""
    return spec in EMBEDDED or _is_idx_folder(Path(spec))


def open_samples(
    spec: str,
    *,
    data_root: str | Path | None = None,
    transform: ImageTransform | None = None,
    classes: Sequence[str] | None = None,
) -> tuple[Samples, Samples | None]:
    """The training samples named by ``spec``, and the held-out (test) split when the data has one.

    ``transform`` reads image files (the model decides size and normalisation); ``classes`` are
    the model's class names, which a folder's or CSV's label names are mapped onto (None: sorted
    folder names, or integer labels).
    """
    if spec in EMBEDDED or _is_idx_folder(Path(spec)):
        if spec in EMBEDDED:
            data = load_dataset(spec, data_root)
            names = FASHION_CLASSES if spec == "fashion-mnist" else [str(i) for i in range(10)]
        else:
            data = load_fashion_mnist(Path(spec))
            names = None
        train = _tensor_samples(data.train_x, data.train_y, f"{spec} (train split)", names)
        test = _tensor_samples(data.test_x, data.test_y, f"{spec} (test split)", names)
        return train, test
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"data {spec!r} is neither an embedded set ({', '.join(EMBEDDED)}) nor an existing file or folder"
        )
    if transform is None:
        raise ValueError(f"reading image files from {spec} needs the model's image size and normalisation")
    if path.is_file() and path.suffix.lower() == ".csv":
        return _csv_samples(path, transform, classes), None
    if path.is_dir() and is_tiny_imagenet(path):
        return _tiny_imagenet_samples(path, transform, classes)
    if path.is_dir():
        return _folder_samples(path, transform, classes), None
    raise ValueError(f"data {spec!r}: expected an image folder (one sub-folder per class), a .csv of path,label, "
                     f"an IDX folder or one of {', '.join(EMBEDDED)}")  # fmt: skip


def _label_of(name: str, classes: list[str], where: str) -> int:
    if name in classes:
        return classes.index(name)
    if re.fullmatch(r"\d+", name):
        return int(name)  # an integer label; checked against the model's head later
    raise ValueError(f"class {name!r} of {where} is not a class of the model; its classes: {', '.join(classes[:20])}")


def _folder_samples(root: Path, transform: ImageTransform, classes: Sequence[str] | None) -> Samples:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"image folder {root} has no class sub-folders (expected {root}/CLASS/IMAGE)")
    names = list(classes) if classes is not None else [p.name for p in folders]
    ids, paths, labels = [], [], []
    for folder in folders:
        label = _label_of(folder.name, names, f"folder {folder}")
        for file in sorted(folder.rglob("*")):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                ids.append(file.relative_to(root).as_posix())
                paths.append(file)
                labels.append(label)
    if not ids:
        raise ValueError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    y = torch.tensor(labels, dtype=torch.int64)
    return Samples(ids, y, ImageFiles(paths, y, transform), names, str(root))


def _tiny_imagenet_samples(
    root: Path, transform: ImageTransform, classes: Sequence[str] | None
) -> tuple[Samples, Samples]:
    """The official TinyImageNet folder: its training images, and the test split of the papers' code
    (:func:`~dualoptim.vision.datasets.tiny_imagenet_files`); ids are paths relative to the folder."""
    train_files, train_labels, test_files, test_labels, wnids = tiny_imagenet_files(root)
    names = list(classes) if classes is not None else wnids
    if names != wnids:
        mapping = [_label_of(wnid, names, f"TinyImageNet class {wnid}") for wnid in wnids]
        train_labels = [mapping[label] for label in train_labels]
        test_labels = [mapping[label] for label in test_labels]
    folder = train_files[0].parents[3]  # <folder>/train/<wnid>/images/<file>
    splits = []
    for files, labels, split in ((train_files, train_labels, "train"), (test_files, test_labels, "test")):
        y = torch.tensor(labels, dtype=torch.int64)
        ids = [file.relative_to(folder).as_posix() for file in files]
        splits.append(Samples(ids, y, ImageFiles(files, y, transform), names, f"{folder} ({split} split)"))
    return splits[0], splits[1]


def _csv_samples(path: Path, transform: ImageTransform, classes: Sequence[str] | None) -> Samples:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    start = 1
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows, start = rows[1:], 2
    names = list(classes) if classes is not None else None
    raw = []
    for number, row in enumerate(rows, start=start):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{path} line {number}: expected 'path,label', got {','.join(row)!r}")
        raw.append((row[0].strip(), row[1].strip(), number))
    if not raw:
        raise ValueError(f"{path} holds no path,label rows")
    if names is None:
        text_labels = sorted({label for _, label, _ in raw if not re.fullmatch(r"\d+", label)})
        names = text_labels or None
    ids, paths, labels = [], [], []
    for file, label, number in raw:
        ids.append(file)
        paths.append(path.parent / file)
        labels.append(_label_of(label, names, f"{path} line {number}") if names else int(label))
    y = torch.tensor(labels, dtype=torch.int64)
    return Samples(ids, y, ImageFiles(paths, y, transform), names, str(path))


def _black(dataset: Dataset) -> list[float] | None:
    """The normalised value of a black pixel per channel for image files (None: in-memory tensors,
    padded with 0, the mean colour, as on the device)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if isinstance(dataset, ImageFiles):
        return [-m / s for m, s in zip(dataset.transform.mean, dataset.transform.std)]
    return None


class LoaderSource:
    """Examples ``indices`` of ``samples``, read by a ``DataLoader`` and placed on ``device``.

    ``augment``: per-example random crop/flip (and resize) of the training stream's images in the
    loader (:mod:`dualoptim.vision.transforms`); evaluation batches and samples stay unaugmented.
    """

    def __init__(
        self, samples: Samples, indices: Tensor, device: torch.device, *, workers: int = 0, eval_batch_size: int = 256,
        augment: TrainAugment | None = None,
    ) -> None:  # fmt: skip
        self.samples, self.indices, self.device = samples, indices, device
        self.workers = workers
        self.eval_batch_size = eval_batch_size
        self.augment = augment

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> Tensor:
        return self.samples.labels[self.indices]

    def loader(self, positions: Tensor, batch_size: int, augment_seed: int | None = None) -> Iterator[Batch]:
        """Batches of the examples at ``positions`` (into this source), in that order, on the device;
        augmented (when this source augments) with the randomness of ``augment_seed``."""
        dataset = self.samples.dataset
        if self.augment is not None and augment_seed is not None:
            dataset = AugmentedImages(dataset, self.augment, augment_seed, _black(dataset))
        loader = DataLoader(
            dataset, batch_size=batch_size, sampler=self.indices[positions].tolist(),
            num_workers=self.workers, pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        iterator = iter(loader)
        while True:
            try:
                x, y = next(iterator)
            except StopIteration:
                return
            except ValueError as error:
                # a worker's error arrives wrapped in its traceback: keep the line that names the file
                found = re.findall(r"^ValueError: (cannot decode image [^\n]*)", str(error), flags=re.M)
                if not found:
                    raise
                raise ValueError(found[-1]) from None
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def batches(self, batch_size: int | None = None) -> Iterator[Batch]:
        """Every example once, in order (evaluation)."""
        return self.loader(torch.arange(len(self)), batch_size or self.eval_batch_size)

    def subset(self, limit: int | None, generator: torch.Generator) -> LoaderSource:
        """At most ``limit`` random examples of this source (all when ``limit`` is None or larger)."""
        if limit is None or limit >= len(self):
            return self
        chosen = torch.sort(torch.randperm(len(self), generator=generator)[:limit]).values
        return LoaderSource(self.samples, self.indices[chosen], self.device, workers=self.workers,
                            eval_batch_size=self.eval_batch_size, augment=self.augment)  # fmt: skip

    def sample(self, limit: int, generator: torch.Generator) -> Batch:
        """At most ``limit`` random examples as tensors (what a method's ``prepare`` looks at)."""
        if limit <= 0:
            return torch.empty(0, device=self.device), torch.empty(0, dtype=torch.int64, device=self.device)
        parts = list(self.subset(limit, generator).batches())
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])

    def stream(self, batch_size: int, generator: torch.Generator) -> LoaderStream:
        return LoaderStream(self, batch_size, generator)


class LoaderStream:
    """Endless shuffled batches of a :class:`LoaderSource`: each pass a fresh permutation from
    ``generator`` (and, when the source augments, new crops and flips), read by a ``DataLoader`` from the current position (so it can resume mid-pass)."""

    def __init__(self, source: LoaderSource, batch_size: int, generator: torch.Generator) -> None:
        self.source, self.batch_size, self.generator = source, batch_size, generator
        self._order = torch.empty(0, dtype=torch.int64)
        self._position = 0
        self._passes = 0
        self._batches: Iterator[Batch] | None = None

    def _augment_seed(self) -> int:
        """The seed of this pass's crops and flips: from the generator's seed and the pass number, so
        that augmenting draws nothing from ``generator`` (the batch order is that of no augmentation)."""
        return (self.generator.initial_seed() * 1_000_033 + self._passes) % (1 << 63)

    def next(self) -> Batch:
        if self._position >= len(self._order):
            self._order = torch.randperm(len(self.source), generator=self.generator)
            self._passes += 1
            self._position = 0
            self._batches = None
        if self._batches is None:
            self._batches = self.source.loader(self._order[self._position :], self.batch_size, self._augment_seed())
        x, y = next(self._batches)
        self._position += len(y)
        return x, y

    def state_dict(self) -> dict[str, Any]:
        return {"order": self._order.clone(), "position": self._position, "passes": self._passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order, self._position, self._batches = state["order"], state["position"], None
        self._passes = state.get("passes", 0)  # absent from states saved before augmentation
