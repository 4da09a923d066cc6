"""Image classifiers a user brings, loaded and saved back in the format they came in.

``--model`` names one of:

- a checkpoint of this project (``dualoptim train``'s ``model.pt`` or ``model.safetensors``, or a
  trained original from ``dualoptim bench``'s cache): the architecture is in the file;
- ``torchvision:<arch>`` or ``timm:<arch>`` with ``--weights FILE`` (a ``.safetensors`` state
  dict, or a ``.pt`` state dict loaded with ``weights_only=True``);
- a Hugging Face image-classification folder (``save_pretrained``) or hub id.

A ``.pt`` that is a pickled whole model is refused unless ``trust_pickle``: unpickling runs
whatever code the file names. torchvision, timm and transformers are imported only on their path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dualoptim.audit.outputs import atomic_file, atomic_folder
from dualoptim.vision.models import build_model
from dualoptim.vision.sources import ImageTransform

__all__ = ["CHECKPOINT_FORMAT", "IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "load_classifier", "save_dualoptim_checkpoint"]

#: the ``format`` field of this project's classifier checkpoints (meta of ``dualoptim train``)
CHECKPOINT_FORMAT = "dualoptim-classifier"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: image shapes of the data sets ``dualoptim bench`` trains its cached originals on
_BENCH_SHAPES = {"digits": (1, 8, 8), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "svhn": (3, 32, 32)}


@dataclass
class LoadedModel:
    """A classifier, where it came from, and how to write the unlearned one in the same format."""

    model: nn.Module
    #: dualoptim-pt | dualoptim-safetensors | state-dict-pt | state-dict-safetensors | huggingface | pickled-module
    format: str
    #: --model as given
    source: str
    #: the files whose bytes are the input weights (hashed by the audit)
    weights_path: Path | None
    num_classes: int
    classes: list[str] | None
    #: how image files are read for this model (None: only tensor data, whose shape the model fixes)
    transform: ImageTransform | None
    meta: dict[str, Any] = field(default_factory=dict)
    _save: Callable[[nn.Module, Path], Path] | None = field(default=None, repr=False)

    def save(self, out: str | os.PathLike[str]) -> Path:
        """Write ``self.model`` into folder ``out`` in the input's format, atomically; return its path."""
        return self._save(self.model, Path(out))


class HFClassifier(nn.Module):
    """A transformers image classifier seen as ``images -> logits``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(pixel_values=x).logits


def _transform_from_meta(meta: dict[str, Any]) -> ImageTransform | None:
    if "mean" not in meta or "image_shape" not in meta:
        return None
    channels, height, width = meta["image_shape"]
    return ImageTransform(channels, (height, width), tuple(meta["mean"]), tuple(meta["std"]))


def save_dualoptim_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    """This project's classifier checkpoint: ``{"state_dict", "meta"}`` in a ``.pt``, or a
    ``.safetensors`` whose metadata holds the meta as JSON. Written atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        return atomic_file(path, lambda tmp: save_file(state, tmp, metadata={"dualoptim": json.dumps(meta)}))
    return atomic_file(path, lambda tmp: torch.save({"state_dict": state, "meta": meta}, tmp))


def _project_model(meta: dict[str, Any], state: dict[str, Tensor], where: Path) -> nn.Module:
    model = build_model(meta["arch"], tuple(meta["image_shape"]), meta["num_classes"], meta["width"])
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{where} does not match its architecture {meta['arch']}: {' '.join(str(error).split())[:200]}") from None
    return model


def _bench_meta(meta: dict[str, Any], state: dict[str, Tensor]) -> dict[str, Any] | None:
    """The meta of a trained original from ``dualoptim bench``'s cache (its key names the model and data)."""
    key = meta.get("key")
    if not isinstance(key, dict) or "model" not in key or "data" not in key:
        return None
    (arch, width), dataset = key["model"], key["data"][0]
    head = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2][-1]
    return {"format": CHECKPOINT_FORMAT, "arch": arch, "width": width, "image_shape": list(_BENCH_SHAPES[dataset]),
            "num_classes": int(head.shape[0]), "classes": None, "dataset": dataset}  # fmt: skip


def _load_pt(path: Path, trust_pickle: bool) -> tuple[Any, bool]:
    """The payload of a ``.pt`` and whether it needed unpickling."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), False
    except Exception as error:
        if not trust_pickle:
            raise ValueError(
                f"refusing to unpickle {path}: it is not a plain state dict ({type(error).__name__}), and loading a "
                "pickled model runs whatever code the file names; pass --trust-pickle only if you trust its origin, "
                "or save model.state_dict() instead"
            ) from None
    return torch.load(path, map_location="cpu", weights_only=False), True


def _head_size(model: nn.Module) -> int:
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(f"cannot find the classification head (a Linear layer) of {type(model).__name__}")
    return linear[-1].out_features


def load_classifier(
    spec: str, *, weights: str | None = None, trust_pickle: bool = False, image_size: int = 224
) -> LoadedModel:
    """Load ``--model spec`` (see the module docstring); ``image_size`` is for architectures whose
    files do not say it (torchvision, timm, pickled modules)."""
    if spec.startswith(("torchvision:", "timm:")):
        return _load_library(spec, weights, image_size)
    if weights is not None:
        raise ValueError(f"--weights goes with --model torchvision:ARCH or timm:ARCH, not with {spec!r}")
    path = Path(spec)
    if path.is_dir() and not (path / "config.json").is_file():
        # a `dualoptim train --out` (or `dualoptim unlearn --out`) folder: its checkpoint file
        found = [path / name for name in ("model.pt", "model.safetensors") if (path / name).is_file()]
        if len(found) == 1:
            return load_classifier(str(found[0]), trust_pickle=trust_pickle, image_size=image_size)
        if found:
            raise ValueError(f"folder {spec} holds both model.pt and model.safetensors: give --model one of the files")
        raise ValueError(f"folder {spec} holds neither a Hugging Face model (config.json) nor a dualoptim checkpoint "
                         "(model.pt or model.safetensors): give --model the model file")  # fmt: skip
    if path.is_dir() or (not path.exists() and spec.count("/") == 1 and not spec.startswith((".", "/"))):
        return _load_huggingface(spec)
    if not path.is_file():
        raise FileNotFoundError(f"model {spec!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "dualoptim" not in metadata:
            raise ValueError(f"{path} is a bare state dict: say its architecture with --model torchvision:ARCH (or timm:ARCH) --weights {path}")
        meta = json.loads(metadata["dualoptim"])
        model = _project_model(meta, load_file(str(path)), path)
        return LoadedModel(model, "dualoptim-safetensors", spec, path, meta["num_classes"], meta.get("classes"),
                           _transform_from_meta(meta), meta, lambda m, out: save_dualoptim_checkpoint(out / "model.safetensors", m, meta))  # fmt: skip
    payload, pickled = _load_pt(path, trust_pickle)
    if isinstance(payload, nn.Module):
        channels = 3
        transform = ImageTransform(channels, (image_size, image_size), IMAGENET_MEAN, IMAGENET_STD)

        def save_module(model: nn.Module, out: Path) -> Path:
            return atomic_file(out / "model.pt", lambda tmp: torch.save(model, tmp))

        return LoadedModel(payload, "pickled-module", spec, path, _head_size(payload), None, transform, {}, save_module)
    if isinstance(payload, dict) and "state_dict" in payload and isinstance(payload.get("meta"), dict):
        state, meta = payload["state_dict"], payload["meta"]
        if meta.get("format") != CHECKPOINT_FORMAT:
            meta = _bench_meta(meta, state)
        if meta is not None:
            model = _project_model(meta, state, path)
            return LoadedModel(model, "dualoptim-pt", spec, path, meta["num_classes"], meta.get("classes"),
                               _transform_from_meta(meta), meta, lambda m, out: save_dualoptim_checkpoint(out / "model.pt", m, meta))  # fmt: skip
    raise ValueError(f"{path} is a bare state dict: say its architecture with --model torchvision:ARCH (or timm:ARCH) --weights {path}")


def _read_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    payload, _ = _load_pt(path, trust_pickle=False)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a state dict")
    return state


def _load_library(spec: str, weights: str | None, image_size: int) -> LoadedModel:
    library, arch = spec.split(":", 1)
    if weights is None:
        raise ValueError(f"--model {spec} needs --weights FILE (.safetensors or a .pt state dict)")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {weights!r} does not exist")
    state = _read_state(path)
    heads = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not heads:
        raise ValueError(f"{path} has no linear head weight; is it a classifier's state dict?")
    num_classes = int(heads[-1].shape[0])
    if library == "torchvision":
        import torchvision

        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    else:
        import timm

        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path} does not match {spec}: {' '.join(str(error).split())[:200]}") from None
    transform = ImageTransform(3, (image_size, image_size), IMAGENET_MEAN, IMAGENET_STD)

    def save(model: nn.Module, out: Path) -> Path:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            written = atomic_file(out / path.name, lambda tmp: save_file(state, tmp))
        else:
            written = atomic_file(out / path.name, lambda tmp: torch.save(state, tmp))
        # the architecture reference travels with the weights, as the input had it
        atomic_file(out / "model.json", lambda tmp: Path(tmp).write_text(json.dumps({"model": spec, "weights": path.name}) + "\n"))
        return written

    fmt = "state-dict-safetensors" if path.suffix == ".safetensors" else "state-dict-pt"
    return LoadedModel(model, fmt, spec, path, num_classes, None, transform, {"arch": spec}, save)


def _load_huggingface(spec: str) -> LoadedModel:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    try:
        inner = AutoModelForImageClassification.from_pretrained(spec)
    except OSError as error:
        raise FileNotFoundError(f"cannot load image classifier {spec!r}: {' '.join(str(error).split())[:200]}") from None
    config = inner.config
    labels = getattr(config, "id2label", None) or {}
    classes = [labels[i] for i in range(len(labels))] if len(labels) == config.num_labels else None
    channels = getattr(config, "num_channels", 3)
    size = getattr(config, "image_size", 224)
    mean, std = IMAGENET_MEAN[:channels], IMAGENET_STD[:channels]
    try:
        processor = AutoImageProcessor.from_pretrained(spec)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        size = processor.size.get("height") or processor.size.get("shortest_edge") or size
    except (OSError, ValueError, AttributeError, TypeError):
        processor = None  # no processor saved: the model config's size and ImageNet statistics
    transform = ImageTransform(channels, (int(size), int(size)), mean, std)
    folder = Path(spec) if Path(spec).is_dir() else None

    def save(model: nn.Module, out: Path) -> Path:
        def write(tmp: Path) -> None:
            model.inner.save_pretrained(tmp)
            if processor is not None:
                processor.save_pretrained(tmp)

        return atomic_folder(out / "model", write)

    return LoadedModel(HFClassifier(inner), "huggingface", spec, folder, config.num_labels, classes, transform,
                       {"arch": type(inner).__name__}, save)  # fmt: skip
