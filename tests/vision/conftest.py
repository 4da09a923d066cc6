"""Tiny data and models for the vision tests: everything runs in seconds on one CPU thread."""

from __future__ import annotations

import pytest
import torch

from tests.vision.helpers import accuracy, memorised_task

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def task():
    model, forget, retain = memorised_task()
    assert accuracy(model, forget) == 100.0 and accuracy(model, retain) == 100.0
    return model, forget, retain


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """One cache of trained digits models for all CLI tests (trained once, then reused)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_bench_yaml(tmp_path_factory, model_cache):
    """A digits benchmark that takes a few seconds: 2 training epochs, 2 seeds, short runs."""
    path = tmp_path_factory.mktemp("presets") / "tiny.yaml"
    path.write_text(
        f"""
methods: [GA, SFRon]
strategies: [alternate, dual]
seeds: [0, 1]
cache_dir: {model_cache}
train: {{epochs: 2}}
unlearn:
  schedule: {{outer_iterations: 1, forget_steps: pass, retain_steps: 2}}
  methods:
    SFRon: {{schedule: {{outer_iterations: 1}}, options: {{mask_examples: 64}}}}
  curve_points: 2
"""
    )
    return path


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory):
    """A small CNN trained by ``dualoptim train`` on 600 digits (a project checkpoint and its ids)."""
    from dualoptim.vision.fit import TrainRequest, train_images

    out = tmp_path_factory.mktemp("digits-model")
    train_images(TrainRequest(data="digits", subset=600, width=8, epochs=6, device="cpu"), out, progress_bar=False)
    return out


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Digits 0-2 as 8x8 PNG files in one sub-folder per class (30 per class), and a model trained on them."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from dualoptim.vision.fit import TrainRequest, train_images

    root = tmp_path_factory.mktemp("folder")
    digits = load_digits()
    data = root / "images"
    counts = {0: 0, 1: 0, 2: 0}
    for image, label in zip(digits.images, digits.target):
        if label in counts and counts[label] < 30:
            (data / f"c{label}").mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 15).astype("uint8"), mode="L").save(data / f"c{label}" / f"{counts[label]:03d}.png")
            counts[label] += 1
    model = root / "model"
    train_images(TrainRequest(data=str(data), channels=1, image_size=8, width=8, epochs=15, lr=0.05, batch_size=16,
                              workers=0, device="cpu", format="safetensors"), model, progress_bar=False)  # fmt: skip
    return data, model / "model.safetensors"
