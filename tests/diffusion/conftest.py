"""Tiny class-conditional U-Nets on 8x8 digits for the diffusion tests: everything runs in seconds on one CPU thread."""

from __future__ import annotations

import pytest
import torch

from dualoptim.diffusion.models import build_unet
from dualoptim.diffusion.process import Diffusion

torch.set_num_threads(1)


def tiny_unet(num_classes: int = 3, size: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return build_unet(num_classes, (1, size, size), [8, 16], [False, False], 1, 0.0, 4)


@pytest.fixture()
def diffusion():
    return Diffusion(timesteps=100)


@pytest.fixture(scope="session")
def digits():
    from dualoptim.diffusion.data import load_images

    return load_images("digits")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """One cache of trained tiny models for every CLI test (trained once, then reused)."""
    return tmp_path_factory.mktemp("diffusion-cache")


@pytest.fixture(scope="session")
def tiny_yaml(tmp_path_factory, model_cache):
    """A digits benchmark of a few seconds: a tiny U-Net, 5 unlearning iterations, 10-step sampling."""
    path = tmp_path_factory.mktemp("presets") / "tiny.yaml"
    path.write_text(
        f"""
methods: [SFRon, SA]
strategies: [alternate, dual]
cache_dir: {model_cache}
data: {{dataset: digits, image_size: 8}}
model: {{channels: [8, 16], attention: [false, false], norm_groups: 4}}
train: {{steps: 40, batch_size: 32, lr: 3.0e-3, ema_decay: 0.9, timesteps: 100}}
sample: {{ddim_steps: 5}}
classifier: {{epochs: 1, width: 8}}
eval: {{forget_samples: 12, kept_samples: 4, real_per_class: 8, grid_classes: 2, grid_images: 3}}
unlearn:
  forget_classes: [3]
  iterations: 3
  batch_size: 8
  methods: {{SFRon: {{options: {{mask_images: 8}}}}, SA: {{options: {{fisher_images: 8}}}}}}
"""
    )
    return path
