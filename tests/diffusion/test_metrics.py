"""FA and the Fréchet distance: hand-computed values, FD of a set with itself, growth with noise, FID's missing weights."""

import numpy as np
import pytest
import torch
from torch import nn

from dualoptim.diffusion.metrics import FID_WEIGHTS_FILE, forget_accuracy, frechet_distance, inception_fid


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = torch.randn(500, 16, generator=torch.Generator().manual_seed(0)).double()
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_grows_with_added_noise():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(800, 8, generator=generator).double() @ torch.randn(8, 8, generator=generator).double()
    distances = [frechet_distance(features, features + s * torch.randn(features.shape, generator=generator).double())
                 for s in (0.1, 0.5, 1.0, 2.0)]  # fmt: skip
    assert all(a < b for a, b in zip(distances, distances[1:])), distances
    assert distances[0] > 0


def test_frechet_distance_of_1d_gaussians_is_the_closed_form():
    # (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2 for one dimension, with the sample moments
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, (5000, 1)), rng.normal(-1.0, 0.5, (5000, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples per set, got 1 and 5"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))


class Fixed(nn.Module):
    """Labels every image by its first pixel (0, 1 or 2)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()


def test_forget_accuracy_is_the_share_labelled_as_the_class():
    images = torch.zeros(8, 1, 2, 2)
    images[:2, 0, 0, 0] = 2  # 2 of 8 images look like class 2
    assert forget_accuracy(Fixed(), images, 2) == pytest.approx(25.0)
    assert forget_accuracy(Fixed(), images, 0) == pytest.approx(75.0)


def test_fid_without_its_weights_names_the_missing_file(tmp_path):
    missing = tmp_path / FID_WEIGHTS_FILE
    with pytest.raises(ValueError, match=f"Inception weights file {missing}.*missing"):
        inception_fid(torch.zeros(4, 1, 8, 8), torch.zeros(4, 1, 8, 8), missing)
