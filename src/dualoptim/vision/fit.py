"""``dualoptim train``: train an image classifier on an embedded or local data set and save it as
a project checkpoint that ``dualoptim unlearn`` reads (the walkthrough's starting point).

In-memory data (digits, Fashion-MNIST, an IDX folder) trains with
:func:`~dualoptim.vision.training.train_classifier`; image files stream through a ``DataLoader``
with the same recipe (SGD with momentum, cosine learning rate). The checkpoint's meta records the
architecture, the image shape and normalisation, the class names and, with ``subset``, which
training examples the model saw, so that ``unlearn`` audits against exactly that set.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dualoptim.config import option
from dualoptim.devices import resolve_device, set_threads
from dualoptim.io import write_text_atomic
from dualoptim.runs import environment
from dualoptim.vision.formats import CHECKPOINT_FORMAT, IMAGENET_MEAN, IMAGENET_STD, save_dualoptim_checkpoint
from dualoptim.vision.models import MODELS, build_model
from dualoptim.vision.sources import ImageTransform, LoaderSource, open_samples, subset_indices
from dualoptim.vision.sources import in_memory as data_in_memory
from dualoptim.vision.training import train_classifier
from dualoptim.vision.transforms import TrainAugment

__all__ = ["TrainRequest", "train_images"]


@dataclass
class TrainRequest:
    """``dualoptim train``'s options."""

    data: str = option("digits | fashion-mnist | IDX folder | image folder | CSV of path,label", "")
    data_root: str | None = option("folder of the embedded data sets (default: ../shared/data)", None)
    subset: int | None = option("train on a fixed random subset of this many examples (its ids are saved)", None)
    exclude: str | None = option("file of ids left out of training (one per line or a JSON list): retraining without a "
                                 "forget set, the positive control of `dualoptim audit`", None)
    arch: str = option("small-cnn | resnet18", "small-cnn")
    width: int = option("channels of the first stage", 16)
    image_size: int = option("image side for image files (resized)", 32)
    channels: int = option("image channels for image files: 1 (grey) or 3 (RGB)", 3)
    epochs: int = option("training epochs", 20)
    lr: float = option("SGD learning rate (cosine decay)", 0.05)
    batch_size: int = option("mini-batch size", 128)
    seed: int = option("seed of the initialisation and the batch order", 0)
    format: str = option("checkpoint format: pt | safetensors", "pt")
    device: str = option("cpu | cuda | cuda:N | auto", "auto")
    threads: int | None = option("torch CPU threads", None)
    workers: int = option("DataLoader workers for image files", 2)
    augment: bool = option("random crop (4-pixel padding) and horizontal flip of each training image", False)


def _file_statistics(samples: Any, channels: int, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of up to 512 training images (for standardising image files)."""
    raw = ImageTransform(channels, (size, size), (0.0,) * channels, (1.0,) * channels)
    chosen = torch.randperm(len(samples), generator=torch.Generator().manual_seed(0))[:512].tolist()
    pixels = torch.stack([raw(samples.dataset.paths[i]) for i in chosen])
    return tuple(pixels.mean(dim=(0, 2, 3)).tolist()), tuple(pixels.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist())


def _train_stream(model: torch.nn.Module, source: LoaderSource, request: TrainRequest, progress_bar: bool) -> float:
    """The recipe of :func:`train_classifier`, batches read from files."""
    torch.manual_seed(request.seed)
    generator = torch.Generator().manual_seed(request.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=request.lr, momentum=0.9, weight_decay=5e-4)
    total = request.epochs * math.ceil(len(source) / request.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total)))
    stream = source.stream(request.batch_size, generator)
    steps = range(total)
    if progress_bar:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="train", unit="step")
    start = time.perf_counter()
    model.train()
    for _ in steps:
        images, labels = stream.next()
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start


def train_images(request: TrainRequest, out: str | os.PathLike[str], *, progress_bar: bool = True,
                 command: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Train, write ``model.pt`` (or ``.safetensors``) and ``train-ids.txt`` into ``out``; return the meta."""
    if not request.data:
        raise ValueError("--data is required")
    MODELS.get(request.arch)
    if request.format not in ("pt", "safetensors"):
        raise ValueError(f"unknown format {request.format!r}; valid: pt, safetensors")
    if request.channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {request.channels}")
    for name in ("epochs", "batch_size", "width", "image_size"):
        if getattr(request, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(request, name)}")
    set_threads(request.threads)
    device = resolve_device(request.device)
    env = environment(command)
    in_memory = data_in_memory(request.data)
    transform = None
    mean = std = None
    if not in_memory:
        # image files: statistics from the data itself, before the transform that uses them exists
        probe = ImageTransform(request.channels, (request.image_size,) * 2, IMAGENET_MEAN[: request.channels],
                               IMAGENET_STD[: request.channels])  # fmt: skip
        samples, _ = open_samples(request.data, transform=probe)
        mean, std = _file_statistics(samples, request.channels, request.image_size)
        transform = ImageTransform(request.channels, (request.image_size,) * 2, mean, std)
    samples, test = open_samples(request.data, data_root=request.data_root, transform=transform)
    indices = torch.arange(len(samples)) if request.subset is None else subset_indices(len(samples), request.subset)
    excluded = 0
    if request.exclude is not None:
        from dualoptim.vision.deletion import read_ids

        index = samples.index()
        left_out = read_ids(request.exclude)
        unknown = [i for i in left_out if i not in index]
        if unknown:
            raise ValueError(f"{len(unknown)} id(s) of --exclude {request.exclude} are not in the data: {', '.join(map(repr, unknown[:5]))}")
        drop = torch.tensor(sorted({index[i] for i in left_out}), dtype=torch.int64)
        kept = indices[~torch.isin(indices, drop)]
        excluded = len(indices) - len(kept)
        if len(kept) == 0:
            raise ValueError(f"--exclude {request.exclude} leaves no example to train on")
        indices = kept
    num_classes = len(samples.classes) if samples.classes else int(samples.labels.max()) + 1
    # image files are augmented per example in the loader's workers, tensors on the device (train_classifier)
    augment = TrainAugment(padding=4, flip=True) if request.augment and not in_memory else None
    source = LoaderSource(samples, indices, device, workers=0 if in_memory else request.workers, augment=augment)
    first, _ = source.sample(1, torch.Generator().manual_seed(0))
    image_shape = tuple(first.shape[1:])
    torch.manual_seed(request.seed)
    model = build_model(request.arch, image_shape, num_classes, request.width).to(device)
    if in_memory:
        images, labels = samples.dataset.images[indices].to(device), samples.labels[indices].to(device)
        seconds = train_classifier(model, images, labels, epochs=request.epochs, lr=request.lr,
                                   batch_size=request.batch_size, seed=request.seed, augment=request.augment,
                                   progress_bar=progress_bar)  # fmt: skip
    else:
        seconds = _train_stream(model, source, request, progress_bar)
    accuracy = {}
    for name, data in (("train", samples), ("test", test)):
        if data is None:
            continue
        idx = indices if name == "train" else torch.arange(len(data))
        accuracy[name] = _accuracy(model, LoaderSource(data, idx, device, workers=source.workers))
    meta = {
        "format": CHECKPOINT_FORMAT, "arch": request.arch, "width": request.width, "image_shape": list(image_shape),
        "num_classes": num_classes, "classes": samples.classes, "data": request.data, "train_subset": request.subset,
        "excluded": excluded,
        "examples": len(indices), "epochs": request.epochs, "lr": request.lr, "batch_size": request.batch_size,
        "seed": request.seed, "augment": request.augment, "seconds": seconds, "accuracy": accuracy, "commit": env["commit"],
    }  # fmt: skip
    if mean is not None:
        meta.update(mean=list(mean), std=list(std))
    out = Path(out)
    save_dualoptim_checkpoint(out / f"model.{request.format}", model.cpu(), meta)
    write_text_atomic(out / "train-ids.txt", "".join(f"{samples.ids[i]}\n" for i in indices.tolist()))
    return meta


@torch.no_grad()
def _accuracy(model: torch.nn.Module, source: LoaderSource) -> float:
    model.eval()
    correct = total = 0
    for images, labels in source.batches():
        correct += int((model(images).argmax(dim=1) == labels).sum())
        total += len(labels)
    return 100.0 * correct / total
