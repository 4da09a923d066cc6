import copy

import pytest
import torch
from torch import nn

from dualoptim.schedule import Schedule
from dualoptim.strategies import STRATEGIES, OptimizerSettings
from dualoptim.vision.loop import unlearn
from dualoptim.vision.masks import (
    diagonal_fisher,
    fisher_mask,
    mean_gradient,
    saliency_mask,
    snapshot_frozen,
)
from dualoptim.vision.methods import build_method


def test_saliency_mask_keeps_the_top_half_by_mean_forget_gradient(task):
    model, forget, retain = task
    mask = saliency_mask(model, forget, ratio=0.5)
    grads = mean_gradient(model, forget)
    scores = torch.cat([g.abs().flatten() for g in grads.values()])
    kept = torch.cat([m.flatten() for m in mask.values()])
    assert kept.float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert scores[kept].min() >= scores[~kept].max()
    # The DualOptim code's variant, |g_f| - |g_r|, selects other weights.
    assert not torch.equal(kept, torch.cat([m.flatten() for m in saliency_mask(model, forget, retain).values()]))


def test_mean_gradient_and_fisher_by_hand():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    per_example = []
    for i in range(5):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        per_example.append(model.weight.grad.clone())
    stacked = torch.stack(per_example)
    assert torch.allclose(mean_gradient(model, (x, y), batch_size=2)["weight"], stacked.mean(0), atol=1e-6)
    assert torch.allclose(diagonal_fisher(model, (x, y), batch_size=2)["weight"], stacked.pow(2).mean(0), atol=1e-6)
    mask = fisher_mask(model, (x[:2], y[:2]), (x[2:], y[2:]))
    expected = stacked[:2].pow(2).mean(0) >= stacked[2:].pow(2).mean(0)
    assert torch.equal(mask["weight"], expected)


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_salun_mask_really_freezes_weights(task, strategy):
    before, forget, retain = task
    model = copy.deepcopy(before)
    method = build_method("SalUn", {"mask_ratio": 0.3})
    # Momentum 0.9 and weight decay on every side: the gradient mask alone would let them move.
    settings = OptimizerSettings(0.05, 0.05, weight_decay=0.05, forget_weight_decay=0.5, plus_weight_decay=0.5)
    unlearn(model, method, forget, retain, strategy=strategy, settings=settings, schedule=Schedule(3, None, None), batch_size=16)
    moved = frozen = 0
    for (name, p), p0 in zip(model.named_parameters(), before.parameters()):
        keep = method.forget_mask[name]
        assert torch.equal(p[~keep], p0[~keep]), f"{strategy}: frozen weights of {name} moved"
        frozen += int((~keep).sum())
        moved += int((p[keep] != p0[keep]).sum())
    assert frozen > 0 and moved > 0


def test_gradient_masking_alone_does_not_freeze():
    """Why the loop restores frozen weights: momentum and weight decay move masked weights."""
    weight = nn.Parameter(torch.ones(4))
    mask = torch.tensor([True, True, False, False])
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9, weight_decay=0.1)
    for step in range(3):
        weight.grad = torch.ones(4) if step == 0 else torch.ones(4) * mask  # an unmasked step before
        optimizer.step()
    assert not torch.equal(weight[2:].detach(), torch.ones(2))


def test_sfron_mask_binds_forget_steps_only(task):
    model, forget, retain = task
    for retain_steps, frozen_stays in ((0, True), (5, False)):
        m = copy.deepcopy(model)
        method = build_method("SFRon", {"mask_examples": 64})
        unlearn(m, method, forget, retain, strategy="dual", settings=OptimizerSettings(1e-2, 0.05),
                schedule=Schedule(4, 1, retain_steps), batch_size=16)
        same = all(torch.equal(p[~method.forget_mask[n]], p0[~method.forget_mask[n]])
                   for (n, p), p0 in zip(m.named_parameters(), model.parameters()))
        assert same is frozen_stays


def test_joint_step_freezes_what_both_masks_freeze():
    model = nn.Linear(2, 1, bias=False)
    forget = {"weight": torch.tensor([[True, False]])}
    retain = {"weight": torch.tensor([[False, False]])}
    frozen, _ = snapshot_frozen(model, [forget, retain])["weight"]
    assert frozen.tolist() == [[False, True]]
    assert snapshot_frozen(model, [forget, None]) == {}
