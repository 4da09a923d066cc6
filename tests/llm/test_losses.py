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
