import pytest
import torch
from torch import nn

from dualoptim import DualOptim, DualOptimPlus
from dualoptim.unlearn import STRATEGIES, OptimizerSettings, build_optimizer, register_strategy
from dualoptim.unlearn.strategies import SharedState

G_F, G_R = torch.tensor([1.0, -2.0]), torch.tensor([-3.0, 0.5])


def _param():
    return nn.Parameter(torch.zeros(2))


def _step(optimizer, param, grad, objective):
    param.grad = grad.clone()
    optimizer.step(objective=objective)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_steps_both_objectives(name):
    param = _param()
    optimizer = build_optimizer(name, [param], OptimizerSettings(1e-2, 1e-2))
    for objective, grad in (("forget", G_F), ("retain", G_R)):
        before = param.detach().clone()
        _step(optimizer, param, grad, objective)
        assert not torch.equal(param.detach(), before)


def test_strategy_classes():
    settings = OptimizerSettings(1e-3, 1e-2)
    assert isinstance(build_optimizer("dual", [_param()], settings), DualOptim)
    assert isinstance(build_optimizer("dual+", [_param()], settings), DualOptimPlus)
    assert isinstance(build_optimizer("alternate", [_param()], settings).inner, torch.optim.SGD)
    assert STRATEGIES.get("joint").joint and not STRATEGIES.get("alternate").joint
    with pytest.raises(ValueError, match=r"unknown strategy 'triple'; valid: joint, alternate, dual, dual\+"):
        build_optimizer("triple", [_param()], settings)


def test_alternate_shares_one_momentum_buffer():
    param = _param()
    optimizer = build_optimizer("alternate", [param], OptimizerSettings(0.1, 0.1, momentum=0.9, weight_decay=0.0))
    _step(optimizer, param, G_F, "forget")
    _step(optimizer, param, G_R, "retain")
    # shared momentum: m_r = 0.9 m_f + g_r with m_f = g_f
    buffer = optimizer.inner.state[param]["momentum_buffer"]
    assert torch.allclose(buffer, 0.9 * G_F + G_R)


def test_dual_keeps_one_state_per_objective():
    param = _param()
    optimizer = build_optimizer("dual", [param], OptimizerSettings(1e-3, 0.1, weight_decay=0.0, forget_weight_decay=0.0))
    _step(optimizer, param, G_F, "forget")
    _step(optimizer, param, G_R, "retain")
    _step(optimizer, param, G_R, "retain")
    assert torch.allclose(optimizer.forget.state[param]["exp_avg"], 0.1 * G_F)  # (1 - beta1) g_f, untouched by retain
    assert torch.allclose(optimizer.retain.state[param]["momentum_buffer"], 0.9 * G_R + G_R)  # no g_f inside


def test_shared_state_uses_each_objectives_learning_rate_and_outer_multiplier():
    param = _param()
    optimizer = SharedState([param], lambda p: torch.optim.SGD(p, lr=1.0), forget_lr=0.5, retain_lr=0.1)
    _step(optimizer, param, torch.ones(2), "forget")
    assert torch.allclose(param.detach(), torch.full((2,), -0.5))
    optimizer.param_groups[0]["lr"] = 0.5  # what a scheduler on the outer optimizer does
    _step(optimizer, param, torch.ones(2), "retain")
    assert torch.allclose(param.detach(), torch.full((2,), -0.55))
    with pytest.raises(ValueError, match="needs an objective"):
        optimizer.step()
    with pytest.raises(ValueError, match=r"invalid forget_lr: -1"):
        SharedState([param], lambda p: torch.optim.SGD(p, lr=1.0), forget_lr=-1, retain_lr=0.1)


def test_registering_a_strategy_is_enough_to_use_it():
    @register_strategy("test-adam-both")
    def adam_both(params, settings):
        return DualOptim(params, forget=lambda p: torch.optim.Adam(p, lr=settings.forget_lr),
                         retain=lambda p: torch.optim.Adam(p, lr=settings.retain_lr))

    try:
        param = _param()
        optimizer = build_optimizer("test-adam-both", [param], OptimizerSettings(1e-2, 1e-3))
        _step(optimizer, param, G_F, "forget")
        assert torch.allclose(param.detach(), -1e-2 * torch.sign(G_F), atol=1e-6)
    finally:
        STRATEGIES._items.pop("test-adam-both")
