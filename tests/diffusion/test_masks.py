"""Masks truly freeze weights under every strategy, and the masks select what they should."""

from dataclasses import dataclass

import pytest
import torch

from dualoptim.diffusion.loop import unlearn
from dualoptim.diffusion.masks import fisher_ratio_mask, saliency_mask
from dualoptim.diffusion.methods import Context, Method
from dualoptim.strategies import STRATEGIES, OptimizerSettings
from tests.diffusion.conftest import tiny_unet


def _context(diffusion, num_classes=3):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, 8, 8, generator=generator) * 2 - 1
    labels = torch.arange(16) % num_classes
    forget = labels == 0
    return Context(diffusion, 0, num_classes, (images[forget], labels[forget]), (images[~forget], labels[~forget]),
                   (images, labels), 0.1, generator)  # fmt: skip


@dataclass
class HalfMasked(Method):
    """GA with a mask that freezes every other weight for both objectives (weight decay on, to tempt them)."""

    def prepare(self, model, context):
        super().prepare(model, context)
        mask = {n: torch.arange(p.numel()).reshape(p.shape) % 2 == 0 for n, p in model.named_parameters()}
        self.forget_mask = self.retain_mask = mask

    def forget_loss(self, model, batch, progress):
        return -self.noise_losses(model, batch).mean()


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_masked_weights_do_not_move_under_any_strategy(strategy, diffusion):
    model = tiny_unet()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    settings = OptimizerSettings(1e-2, 1e-2, family="adam", weight_decay=0.0 if "8bit" in strategy else 0.1,
                                 forget_weight_decay=0.0 if "8bit" in strategy else 0.1)  # fmt: skip
    method = HalfMasked()
    unlearn(model, method, _context(diffusion), strategy=strategy, settings=settings, iterations=3, batch_size=4)
    moved_free = 0
    for name, p in model.named_parameters():
        frozen = ~method.forget_mask[name]
        assert torch.equal(p.detach()[frozen], before[name][frozen]), f"{name}: a frozen weight moved"
        moved_free += int((p.detach()[~frozen] != before[name][~frozen]).sum())
    assert moved_free > 0  # the free half did move


def test_saliency_mask_keeps_the_requested_share(diffusion):
    model = tiny_unet()
    context = _context(diffusion)
    method = Method()
    method.prepare(model, context)
    mask = saliency_mask(model, method.noise_losses, context.forget, ratio=0.3)
    kept = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    assert kept == pytest.approx(0.3, abs=0.01)


def test_fisher_ratio_mask_of_identical_sets_keeps_every_weight(diffusion):
    model = tiny_unet()
    context = _context(diffusion)
    method = Method()
    method.prepare(model, context)
    torch.manual_seed(0)
    mask_same = fisher_ratio_mask(model, lambda m, b: (torch.manual_seed(1), method.noise_losses(m, b))[1],
                                  context.forget, context.forget)  # fmt: skip
    assert all(bool(m.all()) for m in mask_same.values())  # F_f / F_r = 1 >= 1 everywhere
