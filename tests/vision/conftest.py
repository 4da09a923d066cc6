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
