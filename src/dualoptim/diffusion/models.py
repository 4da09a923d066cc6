"""Class-conditional noise predictors from ``diffusers``, behind one call: ``model(x_t, t, labels) -> noise``.

- :func:`build_unet`: a ``UNet2DModel`` with a class embedding of ``classes + 1`` rows; the last row
  is the null label that classifier-free guidance drops conditions to (trained here).
- :class:`DiTDenoiser`: a pretrained ``DiTTransformer2DModel`` (its null label is class 1000) on SD
  VAE latents scaled by 0.18215 (GPU preset ``dit-imagenet``).

Checkpoints written here carry the class count, so a model is never used with another data set.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["EMA", "DiTDenoiser", "UNetDenoiser", "build_unet", "load_checkpoint", "load_dit", "save_checkpoint"]

#: SD VAE latent scale (Rombach et al., 2022), used by DiT
LATENT_SCALE = 0.18215


class UNetDenoiser(nn.Module):
    """:math:`\\epsilon_\\theta(x_t, t, y)` of a diffusers ``UNet2DModel``; ``y = num_classes`` is the null label."""

    def __init__(self, unet: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.unet = unet
        self.num_classes = num_classes

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        return self.unet(x, t, class_labels=labels).sample


def build_unet(
    num_classes: int,
    image_shape: tuple[int, int, int],
    channels: list[int],
    attention: list[bool],
    layers_per_block: int = 1,
    dropout: float = 0.0,
    norm_groups: int = 8,
) -> UNetDenoiser:
    """A class-conditional UNet: one level per entry of ``channels``, self-attention where ``attention``."""
    from diffusers import UNet2DModel

    if len(channels) != len(attention):
        raise ValueError(f"model.channels {channels} and model.attention {attention} need one entry per level")
    if any(c % norm_groups for c in channels):
        raise ValueError(f"model.channels {channels} must be multiples of model.norm_groups {norm_groups}")
    in_channels, size, _ = image_shape
    if size % 2 ** (len(channels) - 1):
        raise ValueError(f"image side {size} cannot be halved {len(channels) - 1} times (model.channels {channels})")
    unet = UNet2DModel(
        sample_size=size,
        in_channels=in_channels,
        out_channels=in_channels,
        layers_per_block=layers_per_block,
        block_out_channels=tuple(channels),
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        norm_num_groups=norm_groups,
        dropout=dropout,
        num_class_embeds=num_classes + 1,  # + the null label of classifier-free guidance
    )
    return UNetDenoiser(unet, num_classes)


class DiTDenoiser(nn.Module):
    """A pretrained DiT predicting noise on VAE latents; learned variances are dropped (DDIM needs the mean only)."""

    def __init__(self, transformer: nn.Module, vae: nn.Module, num_classes: int = 1000) -> None:
        super().__init__()
        self.transformer = transformer
        self.vae = vae.requires_grad_(False)
        self.num_classes = num_classes

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        out = self.transformer(x, timestep=t.expand(len(x)) if t.dim() == 0 else t, class_labels=labels).sample
        return out[:, : x.shape[1]]

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] -> scaled latents (the space DiT is trained and unlearned in)."""
        return self.vae.encode(images).latent_dist.sample() * LATENT_SCALE

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode(latents / LATENT_SCALE).sample.clamp(-1, 1)


def load_dit(pretrained: str, vae: str) -> DiTDenoiser:
    """``DiTTransformer2DModel`` and ``AutoencoderKL`` from the hub or local folders (a DiT pipeline's layout)."""
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    sub = {"subfolder": "transformer"} if not Path(pretrained).is_dir() or (Path(pretrained) / "transformer").is_dir() else {}
    transformer = DiTTransformer2DModel.from_pretrained(pretrained, **sub)
    return DiTDenoiser(transformer, AutoencoderKL.from_pretrained(vae), transformer.config.num_embeds_ada_norm)


class EMA:
    """Exponential moving average of a model's weights: :math:`\\bar\\theta \\leftarrow d\\,\\bar\\theta + (1-d)\\,\\theta`."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for average, p in zip(self.model.parameters(), model.parameters()):
            average.lerp_(p.detach(), 1.0 - self.decay)
        for average, b in zip(self.model.buffers(), model.buffers()):
            average.copy_(b)


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """The state dict and ``meta`` (class count, how it was trained), written atomically."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "meta": {**meta, "num_classes": model.num_classes}}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, model: nn.Module) -> dict[str, Any]:
    """Load ``path`` into ``model``; a checkpoint of another class count or shape is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt or foreign file
        raise ValueError(f"checkpoint {path} cannot be read: {' '.join(str(error).split())[:200]}") from None
    if not isinstance(saved, dict) or "state_dict" not in saved or "meta" not in saved:
        raise ValueError(f"checkpoint {path} was not written by dualoptim's diffusion task")
    classes = saved["meta"].get("num_classes")
    if classes != model.num_classes:
        raise ValueError(f"checkpoint {path} has {classes} classes, the data set has {model.num_classes}")
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"checkpoint {path} does not fit the configured model: {str(error).splitlines()[0]}") from None
    return saved["meta"]
