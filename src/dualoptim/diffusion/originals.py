"""The models every unlearning run starts from, trained once and cached: the original denoiser and the classifier.

Both are cached under ``cache_dir/diffusion`` by a hash of everything that determines them, so
reruns, other output folders and other forgotten classes reuse them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dualoptim.diffusion.config import DiffusionConfig
from dualoptim.diffusion.data import LabelledImages
from dualoptim.diffusion.models import build_unet, load_checkpoint, load_dit, save_checkpoint
from dualoptim.diffusion.process import Diffusion
from dualoptim.diffusion.training import Classifier, pretrain_denoiser, train_classifier
from dualoptim.runs import stable_hash

__all__ = ["build_diffusion", "load_or_train_classifier", "load_or_train_denoiser", "new_denoiser"]

_CACHE_VERSION = 1


def build_diffusion(config: DiffusionConfig) -> Diffusion:
    t = config.train
    # latents are not bounded, pixels are: DDIM clips its x0 estimate only in pixel space
    return Diffusion(t.timesteps, t.beta_start, t.beta_end, clip_sample=config.model.arch == "unet")


def new_denoiser(config: DiffusionConfig, data: LabelledImages) -> nn.Module:
    m = config.model
    if m.arch == "dit":
        return load_dit(m.pretrained, m.vae)
    if m.arch != "unet":
        raise ValueError(f"unknown model.arch {m.arch!r}; valid: unet, dit")
    return build_unet(data.num_classes, data.image_shape, m.channels, m.attention, m.layers_per_block, m.dropout, m.norm_groups)


def _data_key(config: DiffusionConfig) -> list[Any]:
    return [config.data.dataset, config.data.image_size, config.data.train_subset]


def load_or_train_denoiser(
    config: DiffusionConfig, data: LabelledImages, cache: Path, device: torch.device, *, progress_bar: bool = False,
    log: Any = print,
) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """The original model: ``model.checkpoint``, the pretrained DiT, or a UNet trained here (cached)."""
    model = new_denoiser(config, data)
    if config.model.arch == "dit":
        return model.to(device), {"pretrained": config.model.pretrained, "vae": config.model.vae}
    if config.model.checkpoint:
        return model.to(device), {**load_checkpoint(config.model.checkpoint, model), "checkpoint": config.model.checkpoint}
    model_cfg = {k: v for k, v in dataclasses.asdict(config.model).items() if k not in ("checkpoint", "pretrained", "vae")}
    key = {"v": _CACHE_VERSION, "data": _data_key(config), "model": model_cfg, "train": dataclasses.asdict(config.train)}
    path = cache / "diffusion" / f"denoiser-{stable_hash(key)}.pt"
    if path.is_file():
        return model.to(device), load_checkpoint(path, model)
    log(f"pre-training the original denoiser (cached as {path})")
    t = config.train
    model.to(device)
    ema, seconds = pretrain_denoiser(
        model, build_diffusion(config), data.images.to(device), data.labels.to(device), steps=t.steps,
        batch_size=t.batch_size, lr=t.lr, ema_decay=t.ema_decay, cond_drop=t.cond_drop, seed=t.seed,
        progress_bar=progress_bar,
    )  # fmt: skip
    meta = {"seconds": seconds, "key": key, "images": len(data.labels), "threads": torch.get_num_threads()}
    save_checkpoint(path, ema, meta)
    return ema, meta


def load_or_train_classifier(
    config: DiffusionConfig, data: LabelledImages, cache: Path, device: torch.device
) -> tuple[Classifier, dict[str, Any]]:
    """The project's classifier of the same (resized) training images: ``classifier.checkpoint`` or trained here (cached)."""
    c = config.classifier
    model = Classifier(data.image_shape[0], data.num_classes, c.width)
    if c.checkpoint:
        meta = {**load_checkpoint(c.checkpoint, model), "checkpoint": c.checkpoint}
        return model.to(device).eval(), meta
    key = {"v": _CACHE_VERSION, "data": _data_key(config),
           "classifier": {k: v for k, v in dataclasses.asdict(c).items() if k != "checkpoint"}}  # fmt: skip
    path = cache / "diffusion" / f"classifier-{stable_hash(key)}.pt"
    if path.is_file():
        return model.to(device).eval(), load_checkpoint(path, model)
    model.to(device)
    seconds = train_classifier(model, data.images.to(device), data.labels.to(device), epochs=c.epochs, lr=c.lr,
                               batch_size=c.batch_size)  # fmt: skip
    meta = {"seconds": seconds, "key": key}
    save_checkpoint(path, model, meta)
    return model.eval(), meta
