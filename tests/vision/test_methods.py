import math

import pytest
import torch
import torch.nn.functional as F

from dualoptim.vision.methods import METHODS, build_method
from dualoptim.vision.methods.sfron import SFRon
from tests.vision.helpers import TinyNet


@pytest.fixture()
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(12, 16, generator=generator), torch.randint(0, 4, (12,), generator=generator)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_gives_finite_differentiable_losses_for_its_sides(name, batch):
    torch.manual_seed(0)
    model = TinyNet()
    method = build_method(name)
    method.prepare(model, batch, batch, torch.Generator().manual_seed(0))
    for side, present in (("forget", method.has_forget), ("retain", method.has_retain)):
        loss_fn = getattr(method, f"{side}_loss")
        if not present:
            with pytest.raises(NotImplementedError, match=f"has no {side} loss"):
                loss_fn(model, batch, 0.0)
            continue
        loss = loss_fn(model, batch, 0.0)
        assert loss.dim() == 0 and torch.isfinite(loss)
        grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads) or name == "SCRUB"


def test_gradient_ascent_sign_lives_in_the_method(batch):
    model = TinyNet()
    ce = F.cross_entropy(model(batch[0]), batch[1])
    assert build_method("GA").forget_loss(model, batch, 0.0).item() == pytest.approx(-ce.item(), rel=1e-5)
    neggrad = build_method("NegGrad+")
    assert neggrad.forget_loss(model, batch, 0.0).item() == pytest.approx(-ce.item(), rel=1e-5)
    assert neggrad.retain_loss(model, batch, 0.0).item() == pytest.approx(ce.item(), rel=1e-5)


def test_random_labels_are_uniform_and_redrawn_each_batch(batch):
    model = TinyNet().eval()
    method = build_method("RL")
    method.prepare(model, batch, batch, torch.Generator().manual_seed(5))
    first, second = method.forget_loss(model, batch, 0.0), method.forget_loss(model, batch, 0.0)
    generator = torch.Generator().manual_seed(5)
    logits = model(batch[0])
    expected = [F.cross_entropy(logits, torch.randint(0, 4, (12,), generator=generator)) for _ in range(2)]
    assert first.item() == pytest.approx(expected[0].item(), rel=1e-5)
    assert second.item() == pytest.approx(expected[1].item(), rel=1e-5)
    assert first.item() != second.item()


def test_scrub_losses_against_the_frozen_teacher(batch):
    torch.manual_seed(0)
    model = TinyNet().eval()
    method = build_method("SCRUB", {"gamma": 1.0, "alpha": 0.5})
    method.prepare(model, batch, batch, None)
    ce = F.cross_entropy(model(batch[0]), batch[1]).item()
    # Student = teacher: no divergence yet.
    assert method.forget_loss(model, batch, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    assert method.retain_loss(model, batch, 0.0).item() == pytest.approx(ce, rel=1e-5)
    with torch.no_grad():
        model.body[-1].bias.add_(torch.tensor([1.0, 0.0, -1.0, 0.5]))
    p_teacher = torch.softmax(method.teacher(batch[0]), 1)
    log_student = torch.log_softmax(model(batch[0]), 1)
    kl = (p_teacher * (p_teacher.log() - log_student)).sum(1).mean().item()
    assert kl > 0
    assert method.forget_loss(model, batch, 0.0).item() == pytest.approx(-kl, rel=1e-4)
    ce = F.cross_entropy(model(batch[0]), batch[1]).item()
    assert method.retain_loss(model, batch, 0.0).item() == pytest.approx(ce + 0.5 * kl, rel=1e-4)
    assert not any(p.requires_grad for p in method.teacher.parameters())


def test_sfron_adaptive_ascent_with_cosine_weight(batch):
    model = TinyNet().eval()
    method = SFRon()
    losses = F.cross_entropy(model(batch[0]), batch[1], reduction="none").detach()
    weights = losses.pow(-0.5)
    weighted = ((weights * losses).sum() / weights.sum()).item()
    for progress, scale in ((0.0, 25.0), (0.5, 12.5), (1.0, 0.0)):
        assert method.forget_loss(model, batch, progress).item() == pytest.approx(-scale * weighted, rel=1e-5, abs=1e-6)
    assert 0.5 * (1 + math.cos(math.pi * 0.25)) * 25 == pytest.approx(21.339, abs=1e-3)
    method.prepare(model, batch, batch, torch.Generator().manual_seed(0))
    assert method.forget_clip == 7.0 and method.forget_mask is not None and method.retain_mask is None


def test_unknown_method_and_option_are_named():
    with pytest.raises(ValueError, match=r"unknown method 'Oblivion'; valid: .*SalUn"):
        build_method("Oblivion")
    with pytest.raises(ValueError, match=r"unknown option 'gama' for method SCRUB; valid: alpha, gamma, temperature"):
        build_method("SCRUB", {"gama": 2.0})
