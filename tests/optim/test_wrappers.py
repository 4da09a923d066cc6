"""The optimizers under wrappers that call step() without arguments."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from dualoptim import AdamW8bit, DualOptim, DualOptimPlus

FACTORIES = {
    "DualOptim": partial(
        DualOptim, forget=partial(torch.optim.AdamW, lr=1e-2), retain=partial(torch.optim.SGD, lr=1e-2)
    ),
    "DualOptimPlus": partial(DualOptimPlus, lr=1e-2),
    "DualOptim 8bit": partial(
        DualOptim, forget=partial(AdamW8bit, lr=1e-2), retain=partial(AdamW8bit, lr=1e-2)
    ),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_grad_scaler_steps_the_objective_set_beforehand_and_skips_inf_steps(name):
    torch.manual_seed(0)
    model = torch.nn.Linear(80, 64)
    optimizer = FACTORIES[name](model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x = torch.randn(16, 80)

    optimizer.set_objective("forget")
    before = model.weight.detach().clone()
    scaler.scale(model(x).pow(2).mean()).backward()
    scaler.step(optimizer)  # calls optimizer.step() with no objective
    scaler.update()
    optimizer.zero_grad()
    assert not torch.equal(model.weight, before)

    # An overflowing step is skipped by the scaler, so the 8-bit states never see the inf.
    optimizer.set_objective("retain")
    before = model.weight.detach().clone()
    scaler.scale(model(x).pow(2).mean() * float("inf")).backward()
    scaler.step(optimizer)
    scaler.update()
    assert torch.equal(model.weight, before)
    assert scaler.get_scale() < 2.0**8
