"""FA, the Fréchet distance of generated images, and the kept-class accuracy.

- **FA** (forgetting accuracy): % of images generated for the forgotten class that the project's
  classifier labels as that class (lower is better; ~ chance or 0 once forgotten).
- **FD (classifier features)**: the Fréchet distance between Gaussians fitted to the classifier's
  penultimate features of generated and real images of the kept classes. It is the FID formula in
  another feature space, so its values are not comparable with FID and it is never called FID.
- **FID**: the same distance in Inception-v3 pool features, through ``torchmetrics`` (which uses
  torch-fidelity's Inception), only when the Inception weights file is present locally.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["FID_WEIGHTS_FILE", "class_accuracy", "classifier_features", "forget_accuracy", "frechet_distance", "inception_fid"]

#: torch-fidelity's Inception-v3 weights for FID (what ``eval.fid_weights`` must point at)
FID_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


@torch.no_grad()
def _predict(classifier: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    device = next(classifier.parameters()).device
    return torch.cat([classifier(images[i : i + batch_size].to(device)).argmax(1).cpu()
                      for i in range(0, len(images), batch_size)])  # fmt: skip


def forget_accuracy(classifier: nn.Module, images: Tensor, forget_class: int) -> float:
    """FA: % of ``images`` (generated for ``forget_class``) that ``classifier`` labels ``forget_class``."""
    return 100.0 * (_predict(classifier, images) == forget_class).float().mean().item()


def class_accuracy(classifier: nn.Module, images: Tensor, labels: Tensor) -> float:
    """% of generated images the classifier labels as the class they were generated for."""
    return 100.0 * (_predict(classifier, images) == labels).float().mean().item()


@torch.no_grad()
def classifier_features(classifier: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """The classifier's penultimate activations (``classifier.features``), float64 on the CPU."""
    device = next(classifier.parameters()).device
    return torch.cat([classifier.features(images[i : i + batch_size].to(device)).double().cpu()
                      for i in range(0, len(images), batch_size)])  # fmt: skip


def frechet_distance(a: Tensor, b: Tensor) -> float:
    r"""Fréchet distance of Gaussians fitted to feature sets ``a`` and ``b`` (rows are samples):

    .. math:: \lVert \mu_a - \mu_b \rVert^2 + \mathrm{tr}\,\Sigma_a + \mathrm{tr}\,\Sigma_b - 2\,\mathrm{tr}\,(\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2})^{1/2}

    (Heusel et al., 2017). The trace of the square root is computed from the eigenvalues of the
    symmetric :math:`\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2}`, which is stable for singular covariances.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 samples per set, got {len(a)} and {len(b)}")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(middle).sum()
    return float(max(distance, 0.0))


def inception_fid(generated: Tensor, real: Tensor, weights: str | Path) -> float:
    """FID through torchmetrics with the local Inception weights ``weights`` (images in [-1, 1])."""
    weights = Path(weights)
    if not weights.is_file():
        raise ValueError(f"FID needs the Inception weights file {weights} ({FID_WEIGHTS_FILE}), which is missing")
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(weights))

    def rgb(x: Tensor) -> Tensor:  # [-1, 1] -> [0, 1], grey -> 3 channels
        x = (x + 1) / 2
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    for start in range(0, len(real), 256):
        fid.update(rgb(real[start : start + 256]), real=True)
    for start in range(0, len(generated), 256):
        fid.update(rgb(generated[start : start + 256]), real=False)
    return float(fid.compute())
