import copy
import math

import pytest
import torch
import torch.nn.functional as F

from dualoptim.vision.masks import fisher_mask, saliency_mask
from dualoptim.vision.methods import METHODS, build_method
from dualoptim.vision.methods.sfron import SFRon
from tests.vision.helpers import TinyNet


@pytest.fixture()
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(12, 16, generator=generator), torch.randint(0, 4, (12,), generator=generator)


# -- independent references of every method's documented losses ---------------------------------


def per_example_ce(logits, labels):
    """:math:`\\ell_i = \\log \\sum_c e^{z_{ic}} - z_{i y_i}`, written out rather than F.cross_entropy."""
    return logits.logsumexp(1) - logits[torch.arange(len(labels)), labels]


def kl_teacher_student(teacher_logits, student_logits, temperature):
    """:math:`\\frac1B \\sum_i \\sum_c p_t \\log(p_t / p_s)` at temperature ``temperature``."""
    p_teacher = torch.softmax(teacher_logits / temperature, 1)
    p_student = torch.softmax(student_logits / temperature, 1)
    return (p_teacher * (p_teacher.log() - p_student.log())).sum(1).mean()


def random_labels(seed, n, classes=4):
    """The labels RL draws first after ``prepare(..., generator=Generator().manual_seed(seed))``."""
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def ce_reference(method, model, batch):
    return per_example_ce(model(batch[0]), batch[1]).mean()


def ascent_reference(method, model, batch):
    return -per_example_ce(model(batch[0]), batch[1]).mean()


def random_label_reference(method, model, batch):
    return per_example_ce(model(batch[0]), random_labels(PREPARE_SEED, len(batch[1]))).mean()


def scrub_forget_reference(method, model, batch):
    with torch.no_grad():
        teacher = method.teacher(batch[0])
    return -kl_teacher_student(teacher, model(batch[0]), method.temperature)


def scrub_retain_reference(method, model, batch):
    with torch.no_grad():
        teacher = method.teacher(batch[0])
    logits = model(batch[0])
    kl = kl_teacher_student(teacher, logits, method.temperature)
    return method.gamma * per_example_ce(logits, batch[1]).mean() + method.alpha * kl


def sfron_forget_reference(method, model, batch, progress=0.0):
    losses = per_example_ce(model(batch[0]), batch[1])
    weights = losses.detach() ** -method.adaptive_lambda  # a weighting, not a term to differentiate
    scale = method.weight * (1 + math.cos(math.pi * progress)) / 2
    return -scale * (weights * losses).sum() / weights.sum()


PREPARE_SEED = 3
#: (method, options, side, reference loss): every loss of every registered method, with
#: non-default hyper-parameters where the method has them, so a swapped coefficient shows.
CASES = [
    ("GA", {}, "forget", ascent_reference),
    ("NegGrad+", {}, "forget", ascent_reference),
    ("NegGrad+", {}, "retain", ce_reference),
    ("RL", {}, "forget", random_label_reference),
    ("RL", {}, "retain", ce_reference),
    ("SalUn", {"mask_ratio": 0.3}, "forget", random_label_reference),
    ("SalUn", {"mask_ratio": 0.3}, "retain", ce_reference),
    ("SCRUB", {"gamma": 0.7, "alpha": 0.3, "temperature": 2.0}, "forget", scrub_forget_reference),
    ("SCRUB", {"gamma": 0.7, "alpha": 0.3, "temperature": 2.0}, "retain", scrub_retain_reference),
    ("SFRon", {"adaptive_lambda": 0.7, "weight": 10.0}, "forget", sfron_forget_reference),
    ("SFRon", {}, "retain", ce_reference),
    ("FT", {}, "retain", ce_reference),
    ("Retrain", {}, "retain", ce_reference),
]


def prepared(name, options, batch):
    """A model and method after ``prepare``, the student then moved away from the state it was
    prepared on (SCRUB's teacher): at student = teacher the KL terms have a zero gradient."""
    torch.manual_seed(0)
    model = TinyNet().eval()
    method = build_method(name, options)
    method.prepare(model, batch, (batch[0].flip(0), batch[1]), torch.Generator().manual_seed(PREPARE_SEED))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model, method


def test_every_registered_method_has_a_reference_for_each_of_its_losses():
    expected = set()
    for name in METHODS.names():
        cls = METHODS.get(name)
        expected |= {(name, side) for side, present in (("forget", cls.has_forget), ("retain", cls.has_retain)) if present}
    assert {(name, side) for name, _, side, _ in CASES} == expected


@pytest.mark.parametrize(("name", "options", "side", "reference"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_loss_and_gradient_equal_the_documented_formula(name, options, side, reference, batch):
    model, method = prepared(name, options, batch)
    params = list(model.parameters())
    loss = getattr(method, f"{side}_loss")(model, batch, 0.0)
    assert loss.dim() == 0 and torch.isfinite(loss)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    expected_loss = reference(method, model, batch)
    expected_grads = torch.autograd.grad(expected_loss, params)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5, abs=1e-6)
    for g, e in zip(grads, expected_grads):
        assert g is not None
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)
    # Every loss moves the model (SCRUB's KL terms too, once the student left the teacher).
    assert sum(g.abs().sum() for g in grads) > 1e-3


@pytest.mark.parametrize("name", METHODS.names())
def test_a_method_without_a_loss_says_so(name, batch):
    model, method = prepared(name, {}, batch)
    for side, present in (("forget", method.has_forget), ("retain", method.has_retain)):
        if not present:
            with pytest.raises(NotImplementedError, match=f"has no {side} loss"):
                getattr(method, f"{side}_loss")(model, batch, 0.0)


def test_gradient_ascent_sign_lives_in_the_method(batch):
    model = TinyNet()
    ce = F.cross_entropy(model(batch[0]), batch[1])
    assert ce.item() > 0.1
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
    assert kl > 0.01  # the bias shift really moved the student
    assert method.forget_loss(model, batch, 0.0).item() == pytest.approx(-kl, rel=1e-4)
    ce = F.cross_entropy(model(batch[0]), batch[1]).item()
    assert method.retain_loss(model, batch, 0.0).item() == pytest.approx(ce + 0.5 * kl, rel=1e-4)
    # The teacher is a frozen copy: moving the student did not move it.
    assert not any(p.requires_grad for p in method.teacher.parameters())
    assert not torch.equal(method.teacher.body[-1].bias, model.body[-1].bias)


def test_sfron_adaptive_ascent_with_cosine_weight(batch):
    model = TinyNet().eval()
    method = SFRon()
    losses = per_example_ce(model(batch[0]), batch[1]).detach()
    weights = losses.pow(-0.5)
    weighted = ((weights * losses).sum() / weights.sum()).item()
    # The weighting matters on this batch: the weighted mean is not the plain mean.
    assert abs(weighted - losses.mean().item()) > 1e-3
    # c(t) = 25 * (1 + cos(pi t)) / 2: 25, 25 (2 + sqrt 2) / 4 = 21.3388..., 12.5, 0
    for progress, scale in ((0.0, 25.0), (0.25, 25 * (2 + math.sqrt(2)) / 4), (0.5, 12.5), (1.0, 0.0)):
        assert method.forget_loss(model, batch, progress).item() == pytest.approx(-scale * weighted, rel=1e-5, abs=1e-6)
    # w_i is detached: the gradient is -c * sum_i w_i grad l_i / sum_i w_i, not that of l_i^(1 - lambda).
    params = list(model.parameters())
    got = torch.autograd.grad(method.forget_loss(model, batch, 0.25), params)
    expected = torch.autograd.grad(sfron_forget_reference(method, model, batch, 0.25), params)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


def test_masked_methods_prepare_their_masks(batch):
    torch.manual_seed(0)
    model = TinyNet().eval()
    forget, retain = (batch[0][:6], batch[1][:6]), (batch[0][6:], batch[1][6:])
    before = copy.deepcopy(model.state_dict())
    sfron = build_method("SFRon")
    sfron.prepare(model, forget, retain, torch.Generator().manual_seed(0))
    assert sfron.forget_clip == 7.0 and sfron.retain_mask is None
    expected = fisher_mask(model, forget, retain)
    assert sfron.forget_mask.keys() == expected.keys()
    assert all(torch.equal(sfron.forget_mask[n], expected[n]) for n in expected)
    frozen = sum(int((~m).sum()) for m in sfron.forget_mask.values())
    assert 0 < frozen < sum(m.numel() for m in sfron.forget_mask.values())
    for saliency, other in (("forget", None), ("forget-minus-retain", retain)):
        salun = build_method("SalUn", {"mask_ratio": 0.3, "saliency": saliency})
        salun.prepare(model, forget, retain, torch.Generator().manual_seed(0))
        expected = saliency_mask(model, forget, other, ratio=0.3)
        assert salun.forget_mask is salun.retain_mask and salun.forget_clip is None
        assert all(torch.equal(salun.forget_mask[n], expected[n]) for n in expected)
    # Preparing looked at the model and changed nothing (batch-norm statistics included).
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="saliency must be"):
        build_method("SalUn", {"saliency": "retain"}).prepare(model, forget, retain, None)


def test_unknown_method_and_option_are_named():
    with pytest.raises(ValueError, match=r"unknown method 'Oblivion'; valid: .*SalUn"):
        build_method("Oblivion")
    with pytest.raises(ValueError, match=r"unknown option 'gama' for method SCRUB; valid: alpha, gamma, temperature"):
        build_method("SCRUB", {"gama": 2.0})
