"""TOFU losses: hand-computed values, signs, and every registered combination."""

import math
from types import SimpleNamespace

import pytest
import torch

from dualoptim.llm.data import QAFormat, TofuSource, UnlearningCollator, UnlearningDataset, load_split
from dualoptim.llm.losses import (
    FORGET_LOSSES,
    RETAIN_LOSSES,
    UnlearningLoss,
    gradient_ascent,
    gradient_descent,
    maximum_entropy,
    mean_nll,
    parse_loss,
)
from dualoptim.llm.trainer import frozen_copy


class FixedLogits(torch.nn.Module):
    """A 'model' whose logits are the same vector at every position."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits, dtype=torch.float32))

    def forward(self, input_ids, attention_mask=None):
        b, t = input_ids.shape
        return SimpleNamespace(logits=self.logits.expand(b, t, -1))


def _part(ids, labels):
    ids = torch.tensor([ids])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([labels])}


def _parts(labels):
    """Rows of equal length whose ids do not matter (FixedLogits ignores them)."""
    labels = torch.tensor(labels)
    ids = labels.clamp_min(0)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def sequence_nlls_by_hand(model, part):
    """Summed answer NLL of each row, one unpadded row at a time: -sum_t log p(y_t | y_<t)."""
    nlls = []
    for ids, mask, labels in zip(part["input_ids"], part["attention_mask"], part["labels"]):
        ids, labels = ids[mask.bool()], labels[mask.bool()]
        with torch.no_grad():
            logits = model(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None]).logits[0].double()
        log_p = logits.log_softmax(-1)
        nlls.append(-sum(log_p[t - 1, labels[t]].item() for t in range(1, len(ids)) if labels[t] != -100))
    return nlls


@pytest.fixture()
def moved(model):
    """(model, reference): the reference a frozen copy, the model then moved away from it."""
    reference = frozen_copy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model, reference


@pytest.fixture()
def batch(tokenizer, tofu_dir):
    split = load_split(TofuSource(tofu_dir), "forget10", "1")
    dataset = UnlearningDataset(tokenizer, split, QAFormat(), 64, seed=0)
    return UnlearningCollator(tokenizer.pad_token_id)([dataset[i] for i in range(4)])


def test_mean_nll_by_hand():
    # p = softmax([0, ln 3]) = [0.25, 0.75]; answer tokens 1 then 0 -> NLL = (ln 4/3 + ln 4) / 2
    model = FixedLogits([0.0, math.log(3)])
    part = _part([0, 1, 0], [-100, 1, 0])
    assert mean_nll(model, part).item() == pytest.approx((math.log(4 / 3) + math.log(4)) / 2)


def test_maximum_entropy_by_hand():
    # KL(U || p) with p = [0.25, 0.75]: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3)
    batch = {"forget": _part([0, 1, 0], [-100, 1, 0])}
    assert maximum_entropy(FixedLogits([0.0, math.log(3)]), batch).item() == pytest.approx(0.5 * math.log(4 / 3))
    assert maximum_entropy(FixedLogits([0.0, 0.0]), batch).item() == pytest.approx(0.0, abs=1e-7)


def test_ga_is_minus_gd_on_the_same_rows(model, batch):
    same = {"forget": batch["retain"], "retain": batch["retain"]}
    assert gradient_ascent(model, same).item() == pytest.approx(-gradient_descent(model, same).item())


def test_preference_losses_against_an_identical_reference(model, batch):
    reference = frozen_copy(model)
    beta = 0.1
    # log σ(0) = −ln 2 for every item
    assert UnlearningLoss("NPO+GD").forget(model, batch, reference).item() == pytest.approx(2 / beta * math.log(2), rel=1e-5)
    assert UnlearningLoss("DPO+GD").forget(model, batch, reference).item() == pytest.approx(2 / beta * math.log(2), rel=1e-5)
    assert UnlearningLoss("GA+KL").retain(model, batch, reference).item() == pytest.approx(0.0, abs=1e-6)


# p_theta = softmax([0, ln 3]) = [1/4, 3/4], p_ref = [1/2, 1/2]
THETA, REF = FixedLogits([0.0, math.log(3)]), FixedLogits([0.0, 0.0])


def test_npo_by_hand_where_model_and_reference_differ():
    # answer 1 1: NLL_theta = 2 ln 4/3, NLL_ref = 2 ln 2; answer 0 0: NLL_theta = 2 ln 4, NLL_ref = 2 ln 2
    batch = {"forget": _parts([[-100, 1, 1], [-100, 0, 0]])}
    beta = 0.5
    deltas = [2 * math.log(4 / 3) - 2 * math.log(2), 2 * math.log(4) - 2 * math.log(2)]
    expected = -(2 / beta) * sum(log_sigmoid(beta * d) for d in deltas) / 2
    assert UnlearningLoss("NPO+GD", beta=beta).forget(THETA, batch, REF).item() == pytest.approx(expected, rel=1e-5)


def test_npo_descent_lowers_the_forget_answer_likelihood():
    model = FixedLogits([0.0, math.log(3)])
    part = _part([0, 1, 1], [-100, 1, 1])
    nll_before = mean_nll(model, part).item()
    UnlearningLoss("NPO+GD").forget(model, {"forget": part}, REF).backward()
    with torch.no_grad():
        model.logits.sub_(0.1 * model.logits.grad)
    assert mean_nll(model, part).item() > nll_before + 1e-3


def test_dpo_by_hand_where_model_and_reference_differ():
    # rows: answer 1 1 vs refusal 0 0, and answer 0 vs refusal 1 (each padded with an ignored label)
    batch = {
        "forget": _parts([[-100, 1, 1], [-100, 0, -100]]),
        "forget_idk": _parts([[-100, 0, 0], [-100, 1, -100]]),
    }
    beta = 0.5
    log_theta = {0: math.log(1 / 4), 1: math.log(3 / 4)}
    log_ref = {0: math.log(2 / 3), 1: math.log(1 / 3)}  # softmax([ln 2, 0])
    # (log pi(idk) - log pi(a)) - (log ref(idk) - log ref(a)), summed log-probabilities
    margins = [
        (2 * log_theta[0] - 2 * log_theta[1]) - (2 * log_ref[0] - 2 * log_ref[1]),  # -2 ln 3 - 2 ln 2
        (log_theta[1] - log_theta[0]) - (log_ref[1] - log_ref[0]),  # ln 3 + ln 2
    ]
    expected = -(2 / beta) * sum(log_sigmoid(beta * m) for m in margins) / 2
    reference = FixedLogits([math.log(2), 0.0])
    assert UnlearningLoss("DPO+GD", beta=beta).forget(THETA, batch, reference).item() == pytest.approx(expected, rel=1e-5)


def test_npo_and_dpo_on_a_model_moved_from_its_reference(moved, batch):
    model, reference = moved
    beta = 0.1
    nll = sequence_nlls_by_hand(model, batch["forget"])
    nll_ref = sequence_nlls_by_hand(reference, batch["forget"])
    deltas = [a - b for a, b in zip(nll, nll_ref)]
    assert max(abs(d) for d in deltas) > 1.0 and len(deltas) == 4  # the two models really differ
    npo = -(2 / beta) * sum(log_sigmoid(beta * d) for d in deltas) / len(deltas)
    assert UnlearningLoss("NPO+GD").forget(model, batch, reference).item() == pytest.approx(npo, rel=1e-4)
    idk = sequence_nlls_by_hand(model, batch["forget_idk"])
    idk_ref = sequence_nlls_by_hand(reference, batch["forget_idk"])
    # log pi(idk) - log pi(a) = NLL(a) - NLL(idk)
    margins = [(a - i) - (ar - ir) for a, i, ar, ir in zip(nll, idk, nll_ref, idk_ref)]
    dpo = -(2 / beta) * sum(log_sigmoid(beta * m) for m in margins) / len(margins)
    assert UnlearningLoss("DPO+GD").forget(model, batch, reference).item() == pytest.approx(dpo, rel=1e-4)


def test_kl_retain_loss_on_a_model_moved_from_its_reference(moved, batch):
    model, reference = moved
    part = batch["retain"]
    total = count = 0.0
    for ids, mask in zip(part["input_ids"], part["attention_mask"]):
        ids = ids[mask.bool()]
        with torch.no_grad():
            log_p = model(input_ids=ids[None]).logits[0].double().log_softmax(-1)
            log_ref = reference(input_ids=ids[None]).logits[0].double().log_softmax(-1)
        total += (log_ref.exp() * (log_ref - log_p)).sum().item()
        count += len(ids)
    assert total / count > 1e-3
    got = UnlearningLoss("GA+KL").retain(model, batch, reference).item()
    assert got == pytest.approx(total / count, rel=1e-4)


def test_answer_preference_by_hand():
    # summed NLL: answer token 1 -> ln 4/3, refusal token 0 -> ln 4; AP = −(1/β) log σ(β (ln 4 − ln 4/3))
    model = FixedLogits([0.0, math.log(3)])
    batch = {"retain": _part([0, 1], [-100, 1]), "retain_idk": _part([0, 0], [-100, 0])}
    beta = 0.1
    expected = -(1 / beta) * math.log(1 / (1 + math.exp(-beta * math.log(3))))
    assert UnlearningLoss("GA+AP", beta=beta).retain(model, batch).item() == pytest.approx(expected)


def test_coefficients_scale_each_side(model, batch):
    base = UnlearningLoss("GA+GD")
    scaled = UnlearningLoss("GA+GD", forget_coeff=0.1, regularization_coeff=2.0)
    assert scaled.forget(model, batch).item() == pytest.approx(0.1 * base.forget(model, batch).item(), rel=1e-5)
    assert scaled.retain(model, batch).item() == pytest.approx(2.0 * base.retain(model, batch).item(), rel=1e-5)


@pytest.mark.parametrize("forget", FORGET_LOSSES.names())
@pytest.mark.parametrize("retain", RETAIN_LOSSES.names())
def test_every_combination_gives_finite_losses_and_gradients(model, batch, forget, retain):
    loss = UnlearningLoss(f"{forget}+{retain}")
    reference = frozen_copy(model) if loss.needs_reference else None
    total = loss.forget(model, batch, reference) + loss.retain(model, batch, reference)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert loss.targeted == (forget in ("IDK", "DPO"))


def test_unknown_losses_are_named():
    assert parse_loss("IDK+AP") == ("IDK", "AP")
    with pytest.raises(ValueError, match="unknown forget loss 'XX'; valid: GA, IDK, ME, NPO, DPO"):
        parse_loss("XX+GD")
    with pytest.raises(ValueError, match="unknown retain loss 'YY'; valid: GD, KL, AP"):
        parse_loss("ME+YY")
    with pytest.raises(ValueError, match="unknown loss 'MEGD': expected FORGET\\+RETAIN"):
        UnlearningLoss("MEGD")
    with pytest.raises(ValueError, match="needs a reference model"):
        UnlearningLoss("NPO+GD").forget(FixedLogits([0.0, 1.0]), {"forget": _part([0, 1], [-100, 1])})
