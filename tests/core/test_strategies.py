import pytest
import torch
from torch import nn

from dualoptim import DualOptim, DualOptimPlus, DualOptimPlusRef, SharedState
from dualoptim.strategies import (
    STRATEGIES,
    OptimizerSettings,
    build_optimizer,
    register_strategy,
    uses_single_rate,
)

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
    assert isinstance(build_optimizer("alternate", [_param()], OptimizerSettings(1e-3, 1e-2, family="adamw")).inner,
                      torch.optim.AdamW)
    assert isinstance(build_optimizer("dual", [_param()], OptimizerSettings(1e-3, 1e-2, family="adam")).retain,
                      torch.optim.Adam)
    assert STRATEGIES.get("joint").joint and not STRATEGIES.get("alternate").joint
    assert isinstance(build_optimizer("dual+-ref", [_param()], settings), DualOptimPlusRef)
    with pytest.raises(ValueError, match=r"unknown strategy 'triple'; valid: joint, alternate, alternate-2lr, dual, dual\+"):
        build_optimizer("triple", [_param()], settings)


def test_alternate_is_the_papers_of_each_task():
    """LLM and diffusion (two_rate_alternate False): one rate, a different forget rate refused; image
    classification (the default): a forget rate of its own. alternate-2lr takes two rates everywhere."""
    one_rate = OptimizerSettings(1e-3, 1e-2, family="adamw", two_rate_alternate=False)
    with pytest.raises(ValueError, match=r"alternate steps both objectives at one learning rate .*forget_lr=0\.001 "
                                         r"!= lr=0\.01; for a separate forget rate use alternate-2lr"):
        build_optimizer("alternate", [_param()], one_rate)
    assert uses_single_rate("alternate", one_rate) and not uses_single_rate("alternate-2lr", one_rate)
    assert not uses_single_rate("alternate", OptimizerSettings(1e-3, 1e-2))
    for name, settings in (("alternate-2lr", one_rate), ("alternate", OptimizerSettings(1e-3, 1e-2, family="adamw"))):
        optimizer = build_optimizer(name, [_param()], settings)
        assert optimizer.param_groups[0]["forget_lr"] == 1e-3 and optimizer.param_groups[0]["lr"] == 1e-2
    same = OptimizerSettings(1e-2, 1e-2, family="adamw", two_rate_alternate=False)
    optimizer = build_optimizer("alternate", [_param()], same)
    assert isinstance(optimizer, SharedState) and isinstance(optimizer.inner, torch.optim.AdamW)
    assert optimizer.param_groups[0]["forget_lr"] == optimizer.param_groups[0]["lr"] == 1e-2


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


def test_registering_a_strategy_is_enough_to_use_it():
    @register_strategy("test-adam-both", description="Adam on both sides")
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


def test_every_strategy_has_a_description_and_valid_twin():
    for name in STRATEGIES:
        strategy = STRATEGIES.get(name)
        assert strategy.description and strategy.name == name
        if strategy.rates_from is not None:
            assert strategy.rates_from in STRATEGIES and not STRATEGIES.get(strategy.rates_from).rates_from


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": "lion"}, r"unknown optimizer family 'lion'; valid: sgd, adamw, adam"),
        ({"forget_lr": 0.0}, r"forget_lr must be a number > 0, got 0.0"),
        ({"retain_lr": -1.0}, r"retain_lr must be a number > 0, got -1.0"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptimizerSettings(**{"forget_lr": 1e-3, "retain_lr": 1e-2, **kwargs})


def test_joint_forget_weight_makes_a_joint_sgd_step_honour_both_rates():
    from dualoptim.strategies import joint_forget_weight

    settings = OptimizerSettings(forget_lr=0.5, retain_lr=0.1, momentum=0.0, weight_decay=0.0)
    param = _param()
    optimizer = build_optimizer("joint", [param], settings)
    # the loop's joint gradient: g_r + (eta_f / eta_r) g_f, stepped as the retain objective
    _step(optimizer, param, G_R + joint_forget_weight(settings) * G_F, "retain")
    assert torch.allclose(param.detach(), -(0.5 * G_F + 0.1 * G_R))


def test_set_objective_looks_through_wrappers_and_refuses_plain_optimizers():
    from types import SimpleNamespace

    from dualoptim.strategies import set_objective

    inner = build_optimizer("dual", [_param()], OptimizerSettings(1e-3, 1e-2))
    set_objective(SimpleNamespace(optimizer=inner), "forget")
    assert inner.objective.value == "forget"
    with pytest.raises(TypeError, match="SGD has no set_objective"):
        set_objective(torch.optim.SGD([_param()], lr=0.1), "forget")
