"""DualOptim: one inner optimizer per objective, exactly."""

from __future__ import annotations

import io
from functools import partial

import pytest
import torch

from dualoptim import DualOptim

FORGET = partial(torch.optim.AdamW, lr=1e-2, betas=(0.9, 0.999), weight_decay=0.05)
RETAIN = partial(torch.optim.SGD, lr=5e-2, momentum=0.9, weight_decay=5e-4)


def model_pair(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    twin = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    twin.load_state_dict(model.state_dict())
    return model, twin


def backward(model, x):
    model.zero_grad()
    model(x).pow(2).mean().backward()


def test_only_retain_steps_equal_the_retain_optimizer_alone():
    model, twin = model_pair()
    dual = DualOptim(model.parameters(), forget=FORGET, retain=RETAIN)
    sgd = RETAIN(twin.parameters())
    for _ in range(20):
        x = torch.randn(16, 4)
        backward(model, x)
        backward(twin, x)
        dual.step(objective="retain")
        sgd.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert all(not s for s in dual.forget.state.values())


def test_equals_two_independent_optimizers_on_their_own_gradients():
    model, twin = model_pair()
    dual = DualOptim(model.parameters(), forget=FORGET, retain=RETAIN)
    # Two plain optimizers over the same tensors, each stepped only on its own objective's gradient.
    forget_alone, retain_alone = FORGET(list(twin.parameters())), RETAIN(list(twin.parameters()))
    for step in range(30):
        objective = "forget" if step % 4 == 0 else "retain"
        x = torch.randn(16, 4) * (3.0 if objective == "forget" else 1.0)
        backward(model, x)
        backward(twin, x)
        dual.step(objective=objective)
        (forget_alone if objective == "forget" else retain_alone).step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    first = next(model.parameters())
    assert dual.forget.state[first]["step"].item() == 8
    assert torch.equal(
        dual.retain.state[first]["momentum_buffer"],
        retain_alone.state[next(twin.parameters())]["momentum_buffer"],
    )


def test_default_inner_optimizers_are_adamw_forget_and_sgd_retain():
    dual = DualOptim([torch.zeros(2, requires_grad=True)])
    assert isinstance(dual.forget, torch.optim.AdamW)
    assert isinstance(dual.retain, torch.optim.SGD)
    assert dual.retain.param_groups[0]["momentum"] == 0.9


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_outer_scheduler_scales_both_objectives_and_restores_inner_rates():
    param = torch.zeros(3, requires_grad=True)
    dual = DualOptim(
        [param], forget=partial(torch.optim.SGD, lr=0.4), retain=partial(torch.optim.SGD, lr=0.1)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(dual, lambda epoch: 0.5**epoch)
    scheduler.step()  # outer multiplier 0.5
    assert dual.param_groups[0]["lr"] == 0.5
    param.grad = torch.ones(3)
    dual.step(objective="forget")
    assert torch.allclose(param, torch.full((3,), -0.2))
    param.grad = torch.ones(3)
    dual.step(objective="retain")
    assert torch.allclose(param, torch.full((3,), -0.25))
    assert dual.forget.param_groups[0]["lr"] == 0.4 and dual.retain.param_groups[0]["lr"] == 0.1


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_inner_scheduler_acts_on_one_objective():
    param = torch.zeros(1, requires_grad=True)
    dual = DualOptim(
        [param], forget=partial(torch.optim.SGD, lr=1.0), retain=partial(torch.optim.SGD, lr=1.0)
    )
    torch.optim.lr_scheduler.StepLR(dual.forget, step_size=1, gamma=0.1).step()
    param.grad = torch.ones(1)
    dual.step(objective="forget")
    param.grad = torch.ones(1)
    dual.step(objective="retain")
    assert torch.allclose(param, torch.tensor([-1.1]))


def test_param_groups_pass_their_options_to_both_objectives():
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    dual = DualOptim([{"params": [a]}, {"params": [b], "lr": 1.0}], forget=partial(torch.optim.SGD, lr=0.1),
                     retain=partial(torch.optim.SGD, lr=0.01))  # fmt: skip
    a.grad, b.grad = torch.ones(1), torch.ones(1)
    dual.step(objective="retain")
    assert torch.allclose(a, torch.tensor([-0.01])) and torch.allclose(b, torch.tensor([-1.0]))
    c = torch.zeros(1, requires_grad=True)
    dual.add_param_group({"params": [c], "lr": 2.0})
    c.grad = torch.ones(1)
    dual.step(objective="forget")
    assert torch.allclose(c, torch.tensor([-2.0]))


def test_state_dict_resumes_bit_for_bit_through_torch_save():
    model, twin = model_pair()
    dual = DualOptim(model.parameters(), forget=FORGET, retain=RETAIN)
    dual.set_objective("forget")
    generator = torch.Generator().manual_seed(3)
    inputs = [torch.randn(16, 4, generator=generator) for _ in range(20)]
    for step, x in enumerate(inputs[:10]):
        backward(model, x)
        dual.step(objective="forget" if step % 3 == 0 else "retain")
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": dual.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    twin.load_state_dict(checkpoint["model"])
    resumed = DualOptim(twin.parameters(), forget=FORGET, retain=RETAIN)
    resumed.load_state_dict(checkpoint["optimizer"])
    assert resumed.objective == "forget"
    for step, x in enumerate(inputs[10:], start=10):
        for m, opt in ((model, dual), (twin, resumed)):
            backward(m, x)
            opt.step(objective="forget" if step % 3 == 0 else "retain")
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_zero_grad_clears_every_parameter():
    model, _ = model_pair()
    dual = DualOptim(model.parameters())
    backward(model, torch.randn(2, 4))
    dual.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_invalid_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        DualOptim([])
    with pytest.raises(TypeError, match="forget= must be a callable"):
        DualOptim([torch.zeros(1, requires_grad=True)], forget="adam")
    with pytest.raises(TypeError, match="retain= factory must return a torch.optim.Optimizer, got list"):
        DualOptim([torch.zeros(1, requires_grad=True)], retain=lambda params: [])
    with pytest.raises(TypeError, match="item 1 is str"):
        DualOptim([torch.zeros(1, requires_grad=True), "w"])
    param = torch.zeros(2, requires_grad=True)
    dual = DualOptim([param])
    param.grad = torch.ones(2)
    with pytest.raises(ValueError, match=r"DualOptim.step\(\) needs an objective"):
        dual.step()
    with pytest.raises(ValueError, match="objective must be 'forget' or 'retain', got 'both'"):
        dual.step(objective="both")
    param.grad = torch.ones(2).to_sparse()
    with pytest.raises(ValueError, match="sparse gradients"):
        dual.step(objective="retain")
    with pytest.raises(ValueError, match=r"missing keys \['forget', 'retain'\]"):
        dual.load_state_dict({"param_groups": []})


def test_a_group_forget_lr_is_refused_instead_of_ignored():
    import pytest
    import torch

    from dualoptim import DualOptim

    param = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="invalid option forget_lr; a DualOptim group's options apply to both"):
        DualOptim([{"params": [param], "forget_lr": 1e-3}])
    optimizer = DualOptim([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="param group 1: invalid option forget_lr"):
        optimizer.add_param_group({"params": [param], "forget_lr": 1e-3})
