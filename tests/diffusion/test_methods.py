"""Every registered method: finite losses that move the model, in the direction its docstring says."""

import math

import pytest
import torch

from dualoptim.diffusion.loop import unlearn
from dualoptim.diffusion.methods import METHODS, Context, build_method
from dualoptim.strategies import OptimizerSettings
from tests.diffusion.conftest import tiny_unet


def _context(diffusion):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(24, 1, 8, 8, generator=generator) * 2 - 1
    labels = torch.arange(24) % 3
    forget = labels == 0
    return Context(diffusion, 0, 3, (images[forget], labels[forget]), (images[~forget], labels[~forget]),
                   (images, labels), 0.1, generator)  # fmt: skip


SMALL = {"SFRon": {"mask_images": 8}, "SalUn": {"mask_images": 8}, "SA": {"fisher_images": 8}}


@pytest.mark.parametrize("name", METHODS.names())
def test_each_method_gives_finite_losses_and_changes_the_model(name, diffusion):
    model = tiny_unet()
    before = [p.detach().clone() for p in model.parameters()]
    method = build_method(name, SMALL.get(name, {}))
    log = unlearn(model, method, _context(diffusion), strategy="dual",
                  settings=OptimizerSettings(1e-3, 1e-3, family="adam", weight_decay=0.0), iterations=2, batch_size=4)  # fmt: skip
    assert all(math.isfinite(v) for values in log.losses.values() for v in values)
    assert len(log.losses["forget"]) == len(log.losses["retain"]) == 2  # the 1:1 schedule
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_sfron_forget_loss_is_minus_alpha_times_the_weighted_mean_and_decays(diffusion):
    model = tiny_unet()
    method = build_method("SFRon", {"mask_images": 8, "forget_alpha": 10.0})
    method.prepare(model, _context(diffusion))
    batch = _context(diffusion).forget
    torch.manual_seed(3)
    losses = method.noise_losses(model, batch).detach()
    weights = losses.pow(-0.5)
    torch.manual_seed(3)
    at_start = method.forget_loss(model, batch, 0.0).item()
    assert at_start == pytest.approx(-10.0 * float((weights * losses).sum() / weights.sum()), rel=1e-5)
    torch.manual_seed(3)
    assert method.forget_loss(model, batch, 0.5).item() == pytest.approx(at_start / 2, rel=1e-5)  # cosine: half way


def test_sa_penalty_is_zero_at_the_original_weights_and_grows_away_from_them(diffusion):
    model = tiny_unet()
    method = build_method("SA", {"fisher_images": 8, "ewc_lambda": 1.0})
    method.prepare(model, _context(diffusion))
    assert (method.replay[1] != 0).all()  # the forgotten class is never replayed
    ewc = lambda: sum((method.fisher[n] * (p - method.anchor[n]).pow(2)).sum() for n, p in model.named_parameters())  # noqa: E731
    assert ewc().item() == 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    assert ewc().item() > 0.0


def test_salun_forget_loss_is_zero_when_the_label_already_denoises_like_the_pseudo_class(diffusion):
    model = tiny_unet()
    method = build_method("SalUn", {"mask_images": 8})
    method.prepare(model, _context(diffusion))
    with torch.no_grad():  # the same embedding for the forgotten class (0) and its pseudo-class (1)
        table = model.unet.class_embedding.weight
        table[0] = table[1]
    assert method.forget_loss(model, _context(diffusion).forget, 0.0).item() == pytest.approx(0.0, abs=1e-6)


def test_unknown_method_and_option_are_errors_naming_them():
    with pytest.raises(ValueError, match="unknown method 'ESD'; valid: GA, RL, SA, SalUn, SFRon"):
        build_method("ESD")
    with pytest.raises(ValueError, match="unknown option 'alpha' for method SFRon"):
        build_method("SFRon", {"alpha": 1})
