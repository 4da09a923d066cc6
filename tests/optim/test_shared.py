"""SharedState: one inner optimizer, hence one state, a learning rate per objective."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from dualoptim.optim import SharedState

SGD = partial(torch.optim.SGD, momentum=0.9)


def test_one_momentum_buffer_mixes_the_gradients_of_both_objectives():
    param = torch.zeros(4, requires_grad=True)
    optimizer = SharedState([param], SGD, lr=0.1, forget_lr=0.3)
    g_f, g_r = torch.tensor([1.0, -2.0, 0.5, 3.0]), torch.tensor([0.25, 1.0, -1.0, 2.0])
    param.grad = g_f.clone()
    optimizer.step(objective="forget")
    param.grad = g_r.clone()
    optimizer.step(objective="retain")
    buffer = optimizer.inner.state[param]["momentum_buffer"]
    torch.testing.assert_close(buffer, 0.9 * g_f + g_r)
    # The forget step moved by forget_lr * g_f, the retain step by lr * (the mixed buffer).
    torch.testing.assert_close(param.detach(), -0.3 * g_f - 0.1 * (0.9 * g_f + g_r))
    assert len(optimizer.inner.state) == 1  # one state, not one per objective


def test_equals_the_inner_optimizer_with_its_lr_switched_by_hand_per_objective():
    torch.manual_seed(0)
    param = torch.randn(6, requires_grad=True)
    twin = param.detach().clone().requires_grad_()
    optimizer = SharedState([param], partial(torch.optim.AdamW, weight_decay=0.05), lr=1e-2, forget_lr=4e-2)
    by_hand = torch.optim.AdamW([twin], lr=1.0, weight_decay=0.05)
    for step in range(12):
        objective = "forget" if step % 3 == 0 else "retain"
        grad = torch.randn(6)
        param.grad, twin.grad = grad.clone(), grad.clone()
        optimizer.step(objective=objective)
        by_hand.param_groups[0]["lr"] = 4e-2 if objective == "forget" else 1e-2
        by_hand.step()
        assert torch.equal(param, twin)
        assert optimizer.inner.param_groups[0]["lr"] == by_hand.param_groups[0]["lr"]


def test_default_inner_optimizer_is_sgd_with_momentum_and_forget_lr_defaults_to_lr():
    optimizer = SharedState([torch.zeros(2, requires_grad=True)], lr=0.05)
    assert isinstance(optimizer.inner, torch.optim.SGD)
    inner = optimizer.inner.param_groups[0]
    assert (inner["momentum"], inner["weight_decay"]) == (0.9, 5e-4)
    assert optimizer.param_groups[0]["forget_lr"] == 0.05


def test_param_groups_override_lr_and_forget_lr_separately():
    a, b, c, d = (torch.zeros(2, requires_grad=True) for _ in range(4))
    optimizer = SharedState(
        [
            {"params": [a]},
            {"params": [b], "lr": 0.2},  # lr alone: one rate for both objectives
            {"params": [c], "forget_lr": 0.5},  # forget_lr alone: the default lr for retain
            {"params": [d], "lr": 0.3, "forget_lr": 0.7, "weight_decay": 0.0},
        ],
        torch.optim.SGD,  # no momentum: each step moves by its rate exactly
        lr=0.01,
        forget_lr=0.02,
    )
    rates = [(g["forget_lr"], g["lr"]) for g in optimizer.param_groups]
    assert rates == [(0.02, 0.01), (0.2, 0.2), (0.5, 0.01), (0.7, 0.3)]
    # Outer keys stay outer; the other options go to the inner optimizer's group.
    assert all("forget_lr" not in g and "initial_lr" not in g for g in optimizer.inner.param_groups)
    assert optimizer.inner.param_groups[3]["weight_decay"] == 0.0
    for objective, column in (("forget", 0), ("retain", 1)):
        before = [p.detach().clone() for p in (a, b, c, d)]
        for p in (a, b, c, d):
            p.grad = torch.ones(2)
        optimizer.step(objective=objective)
        for p, p0, group_rates in zip((a, b, c, d), before, rates):
            torch.testing.assert_close(p0 - p.detach(), torch.full((2,), group_rates[column]))


def test_add_param_group_after_construction_reaches_inner_and_outer():
    base = torch.zeros(2, requires_grad=True)
    optimizer = SharedState([base], SGD, lr=0.01, forget_lr=0.02)
    extra = torch.zeros(3, requires_grad=True)
    optimizer.add_param_group({"params": extra, "lr": 0.1, "forget_lr": 0.4, "momentum": 0.0})
    assert len(optimizer.param_groups) == len(optimizer.inner.param_groups) == 2
    outer, inner = optimizer.param_groups[1], optimizer.inner.param_groups[1]
    assert (outer["lr"], outer["forget_lr"], outer["initial_lr"]) == (0.1, 0.4, 0.1)
    assert inner["params"][0] is extra and inner["momentum"] == 0.0 and "forget_lr" not in inner
    extra.grad = torch.ones(3)
    optimizer.step(objective="forget")
    torch.testing.assert_close(extra.detach(), torch.full((3,), -0.4))
    # A parameter already present is refused by the inner optimizer before the outer takes it.
    with pytest.raises(ValueError, match="more than one parameter group"):
        optimizer.add_param_group({"params": [base]})
    assert len(optimizer.param_groups) == len(optimizer.inner.param_groups) == 2
    with pytest.raises(ValueError, match="param group 2: invalid momentum"):
        optimizer.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "momentum": -0.5})
    assert len(optimizer.param_groups) == len(optimizer.inner.param_groups) == 2


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_scheduler_drives_lr_and_the_forget_rate_follows_in_proportion():
    param = torch.zeros(1, requires_grad=True)
    optimizer = SharedState([param], torch.optim.SGD, lr=0.1, forget_lr=0.4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.25)
    scheduler.step()
    param.grad = torch.ones(1)
    optimizer.step(objective="forget")
    torch.testing.assert_close(param.detach(), torch.tensor([-0.1]))
    param.grad = torch.ones(1)
    optimizer.step(objective="retain")
    torch.testing.assert_close(param.detach(), torch.tensor([-0.125]))


def test_closure_runs_with_grad_enabled_and_its_loss_is_returned():
    param = torch.ones(2, requires_grad=True)
    optimizer = SharedState([param], torch.optim.SGD, lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = (param**2).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure, objective="retain")
    assert loss.item() == 2.0
    torch.testing.assert_close(param.detach(), torch.full((2,), 0.8))


def test_state_dict_keeps_inner_state_rates_and_objective():
    param = torch.zeros(2, requires_grad=True)
    optimizer = SharedState([param], SGD, lr=0.1, forget_lr=0.3)
    param.grad = torch.ones(2)
    optimizer.step(objective="forget")
    optimizer.set_objective("retain")
    state = optimizer.state_dict()
    assert state["objective"] == "retain"
    assert state["param_groups"][0]["forget_lr"] == 0.3
    assert torch.equal(state["inner"]["state"][0]["momentum_buffer"], torch.ones(2))
    with pytest.raises(ValueError, match=r"not a SharedState state dict: missing keys \['inner'\]"):
        optimizer.load_state_dict({"param_groups": state["param_groups"]})


def test_repr_shows_both_rates_of_every_group_and_the_inner_optimizer():
    optimizer = SharedState(
        [{"params": [torch.zeros(1, requires_grad=True)]}, {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.5}],
        SGD, lr=0.01, forget_lr=0.03,
    )  # fmt: skip
    text = repr(optimizer)
    assert text.startswith("SharedState(lr=0.01, forget_lr=0.03, lr=0.5, forget_lr=0.5,\n  inner=SGD (")
    assert "momentum: 0.9" in text and text.endswith(")")


def test_invalid_inputs_raise_clear_errors():
    param = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="optimizer= must be a callable"):
        SharedState([param], "sgd")
    with pytest.raises(TypeError, match="must return a torch.optim.Optimizer, got list"):
        SharedState([param], lambda groups: [])
    with pytest.raises(ValueError, match="SharedState optimizer= rejected its arguments: Invalid momentum"):
        SharedState([param], partial(torch.optim.SGD, momentum=-1.0))
    with pytest.raises(ValueError, match="SharedState param group 0: invalid forget_lr"):
        SharedState([{"params": [param], "forget_lr": -0.1}])
    with pytest.raises(TypeError, match="got a single tensor"):
        SharedState(param)
