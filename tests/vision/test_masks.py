import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dualoptim.masks import mask_gradients, restore_frozen, snapshot_frozen
from dualoptim.schedule import Schedule
from dualoptim.strategies import STRATEGIES, OptimizerSettings
from dualoptim.vision import loop
from dualoptim.vision.loop import unlearn
from dualoptim.vision.masks import diagonal_fisher, fisher_mask, mean_gradient, saliency_mask
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


def test_gradient_masking_alone_does_not_freeze_but_restoring_does():
    """Why the loop restores frozen weights: momentum and weight decay move masked weights."""
    weight = nn.Parameter(torch.ones(4))
    mask = {"weight": torch.tensor([True, True, False, False])}
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9, weight_decay=0.1)
    weight.grad = torch.ones(4)  # an unmasked step before: momentum everywhere
    optimizer.step()
    module = nn.Module()
    module.weight = weight
    saved = snapshot_frozen(module, [mask])
    before = weight.detach().clone()
    weight.grad = mask_gradients({"weight": torch.ones(4)}, mask)["weight"]
    optimizer.step()
    assert not torch.equal(weight[2:].detach(), before[2:])  # the mask alone let them move
    moved = weight.detach().clone()
    restore_frozen(module, saved)
    assert torch.equal(weight[2:].detach(), before[2:])  # put back exactly
    assert torch.equal(weight[:2].detach(), moved[:2])  # the free weights keep their step


def test_mask_gradients_zeroes_exactly_the_frozen_weights():
    grads = {"a": torch.tensor([1.0, -2.0, 3.0]), "b": torch.tensor([[4.0, 5.0]])}
    mask = {"a": torch.tensor([True, False, True])}
    masked = mask_gradients(grads, mask)
    assert masked["a"].tolist() == [1.0, 0.0, 3.0]
    assert masked["b"].tolist() == [[4.0, 5.0]]  # a parameter the mask does not name is free
    assert masked["a"] is not grads["a"] and grads["a"].tolist() == [1.0, -2.0, 3.0]  # no in-place change
    assert mask_gradients(grads, None) is grads


def capture_optimizer(monkeypatch, strategy):
    """Run :func:`unlearn` with ``strategy``'s real optimizer, kept in the returned list for inspection."""
    real = STRATEGIES.get(strategy)
    built = []

    def build(params, settings):
        built.append(real.build(params, settings))
        return built[-1]

    monkeypatch.setattr(loop, "STRATEGIES", SimpleNamespace(get=lambda name: dataclasses.replace(real, build=build)))
    return built


#: every state tensor a forget step writes, per strategy (the float32 ones).
FORGET_STATE = {
    "alternate": lambda opt, p: [opt.inner.state[p]["momentum_buffer"]],
    "dual": lambda opt, p: [opt.forget.state[p][k] for k in ("exp_avg", "exp_avg_sq")],
    "dual+": lambda opt, p: [opt.state[p][part][k] for part in ("base", "forget") for k in ("exp_avg", "exp_avg_sq")],
}


@pytest.mark.parametrize("strategy", sorted(FORGET_STATE))
def test_sfron_forget_step_leaves_no_state_on_frozen_weights(task, strategy, monkeypatch):
    """The forget gradient is masked before the optimizer sees it, not only the weights put back:
    otherwise the frozen weights' moments hold forget gradients that later steps apply."""
    before, forget, retain = task
    model = copy.deepcopy(before)
    method = build_method("SFRon")
    built = capture_optimizer(monkeypatch, strategy)
    # No L2 weight decay in a moment: then a frozen weight's state can only come from its gradient.
    settings = OptimizerSettings(0.01, 0.01, weight_decay=0.0, plus_weight_decay=0.0)
    unlearn(model, method, forget, retain, strategy=strategy, settings=settings, schedule=Schedule(1, 1, 0), batch_size=16)
    (optimizer,) = built
    frozen = free = 0
    for name, p in model.named_parameters():
        keep = method.forget_mask[name]
        for state in FORGET_STATE[strategy](optimizer, p):
            assert torch.count_nonzero(state[~keep]) == 0, f"{strategy}: forget state on frozen weights of {name}"
            free += int(torch.count_nonzero(state[keep]))
        frozen += int((~keep).sum())
        assert torch.equal(p[~keep], dict(before.named_parameters())[name][~keep])
    assert frozen > 0 and free > 0


def gradient(model, loss_fn, data):
    """{name: gradient} of ``loss_fn(model, data, 0.0)`` in training mode, on a copy of ``model``."""
    model = copy.deepcopy(model).train()
    names, params = zip(*model.named_parameters())
    return dict(zip(names, torch.autograd.grad(loss_fn(model, data, 0.0), params)))


def test_shared_momentum_carries_no_forget_gradient_into_frozen_weights(task):
    """alternate + SFRon: a retain step after a forget step moves a frozen weight by its own retain
    gradient only, and a free weight by the retain gradient plus the masked forget momentum."""
    before, forget, retain = task
    settings = OptimizerSettings(0.05, 0.1, momentum=0.9, weight_decay=0.0)
    # Batches as large as the sets: every batch is the whole set (the losses are batch means).
    run = {"strategy": "alternate", "settings": settings, "batch_size": 80}
    after_forget = copy.deepcopy(before)
    unlearn(after_forget, build_method("SFRon"), forget, retain, schedule=Schedule(1, 1, 0), **run)
    model = copy.deepcopy(before)
    method = build_method("SFRon")
    unlearn(model, method, forget, retain, schedule=Schedule(1, 1, 1), **run)
    g_forget = gradient(before, method.forget_loss, forget)
    g_retain = gradient(after_forget, method.retain_loss, retain)
    masked_norm = torch.linalg.vector_norm(torch.cat([(g * method.forget_mask[n]).flatten() for n, g in g_forget.items()]))
    assert masked_norm < method.clip  # the forget step is not clipped here
    retain_lr = 0.1 * 0.5  # SFRon's cosine learning rate at step 1 of 2
    forget_on_frozen = 0.0
    for (name, p), p1 in zip(model.named_parameters(), after_forget.parameters()):
        keep = method.forget_mask[name]
        momentum = 0.9 * g_forget[name] * keep + g_retain[name]
        torch.testing.assert_close(p.detach(), p1.detach() - retain_lr * momentum, rtol=1e-5, atol=1e-6)
        forget_on_frozen += g_forget[name][~keep].abs().sum().item()
    assert forget_on_frozen > 0.1  # the mask does drop forget gradients here


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
    torch.manual_seed(0)
    model = nn.Linear(2, 1, bias=False)
    forget = {"weight": torch.tensor([[True, False]])}
    retain = {"weight": torch.tensor([[False, False]])}
    frozen, _ = snapshot_frozen(model, [forget, retain])["weight"]
    assert frozen.tolist() == [[False, True]]
    saved = snapshot_frozen(model, [forget, retain])
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)  # a step moves both weights; the snapshot is a copy, not a view
    restore_frozen(model, saved)
    assert torch.equal(model.weight[0, 1], before[0, 1])
    assert torch.equal(model.weight[0, 0], before[0, 0] + 1.0)
    # A weight only one mask freezes is free in a joint step; a parameter a mask omits is free.
    assert snapshot_frozen(model, [forget, {"weight": torch.tensor([[True, True]])}]) == {}
    assert snapshot_frozen(model, [{"other": torch.tensor([False])}]) == {}
    assert snapshot_frozen(model, [forget, None]) == {}
