"""Float32 master weights: many small updates of bf16 parameters add up as in float32."""

from __future__ import annotations

import copy
import io
from functools import partial

import pytest
import torch

from dualoptim.optim import AdamW8bit, DualOptim, DualOptimPlus, SharedState

STEPS, LR = 400, 1e-5  # 400 Adam steps of ~1e-5: 4e-3 in all, about one bf16 spacing below 1.0

BUILDERS = {
    "DualOptim": lambda params, **kw: DualOptim(
        params, forget=partial(torch.optim.AdamW, lr=LR, weight_decay=0.0),
        retain=partial(torch.optim.AdamW, lr=LR, weight_decay=0.0), **kw,
    ),
    "SharedState": lambda params, **kw: SharedState(
        params, partial(torch.optim.AdamW, weight_decay=0.0), lr=LR, forget_lr=LR, **kw
    ),
    "DualOptimPlus": lambda params, **kw: DualOptimPlus(params, lr=LR, forget_lr=LR, **kw),
    "AdamW8bit": lambda params, **kw: AdamW8bit(params, lr=LR, weight_decay=0.0, **kw),
}


def _run(name: str, dtype: torch.dtype, steps: int = STEPS, **kw) -> tuple[torch.Tensor, torch.optim.Optimizer]:
    """A 16-element parameter at 1.0 descending a constant gradient (Adam's step is then ~lr)."""
    param = torch.nn.Parameter(torch.ones(16, dtype=dtype))
    optimizer = BUILDERS[name]([param], **kw)
    grads = torch.linspace(0.5, 2.0, 16)
    for step in range(steps):
        param.grad = grads.to(dtype)
        objective = "forget" if step % 6 == 0 else "retain"
        if name == "AdamW8bit":
            optimizer.step()
        else:
            optimizer.step(objective=objective)
    return param, optimizer


@pytest.mark.parametrize("name", list(BUILDERS))
def test_small_bf16_updates_accumulate_as_in_float32(name):
    reference, _ = _run(name, torch.float32)
    moved = 1 - reference.detach()
    assert moved.min() > 3e-3  # the float32 run moved every coordinate about 4e-3
    plain, _ = _run(name, torch.bfloat16, master_weights=False)
    assert torch.equal(plain.detach(), torch.ones(16, dtype=torch.bfloat16))  # every update rounded away
    mastered, optimizer = _run(name, torch.bfloat16)
    master = optimizer.masters.copies[mastered]
    assert master.dtype == torch.float32
    torch.testing.assert_close(master, reference.detach(), rtol=0, atol=2e-6)
    # the parameter is the float32 trajectory rounded once
    assert torch.equal(mastered.detach(), reference.detach().to(torch.bfloat16))
    assert mastered.dtype == torch.bfloat16 and mastered.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("name", list(BUILDERS))
def test_masters_survive_state_dict_deepcopy_and_pickle(name):
    half, optimizer = _run(name, torch.bfloat16, steps=100)
    saved = optimizer.state_dict()
    assert set(saved["master"]) == {0}
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    # a fresh optimizer on a copy of the parameter continues exactly where the first one is
    twin_param = torch.nn.Parameter(half.detach().clone())
    twin = BUILDERS[name]([twin_param])
    twin.load_state_dict(torch.load(buffer, weights_only=False))
    torch.testing.assert_close(twin.masters.copies[twin_param], optimizer.masters.copies[half], rtol=0, atol=0)
    copied = copy.deepcopy(optimizer)
    assert len(copied.masters.copies) == 1
    for opt, param in ((optimizer, half), (twin, twin_param)):
        for step in range(60):
            param.grad = torch.linspace(0.5, 2.0, 16).to(torch.bfloat16)
            opt.step() if name == "AdamW8bit" else opt.step(objective="retain" if step % 6 else "forget")
    torch.testing.assert_close(twin.masters.copies[twin_param], optimizer.masters.copies[half], rtol=0, atol=0)


def test_float32_parameters_get_no_master_and_a_state_dict_without_masters_loads():
    param = torch.nn.Parameter(torch.ones(4))
    optimizer = DualOptimPlus([param], lr=LR)
    param.grad = torch.ones(4)
    optimizer.step(objective="forget")
    assert optimizer.masters.copies == {} and optimizer.state_dict()["master"] == {}
    half = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    fresh = DualOptimPlus([half], lr=LR)
    fresh.load_state_dict({**optimizer.state_dict(), "master": {}})  # e.g. saved before masters existed
    half.grad = torch.ones(4, dtype=torch.bfloat16)
    fresh.step(objective="retain")
    assert fresh.masters.copies[half].dtype == torch.float32


def test_bad_master_weights_input():
    with pytest.raises(ValueError, match="master_weights must be True or False, got 'yes'"):
        DualOptimPlus([torch.nn.Parameter(torch.ones(2))], master_weights="yes")
    param = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    optimizer = AdamW8bit([param])
    state = optimizer.state_dict()
    with pytest.raises(ValueError, match="master weight for unknown parameter index 5"):
        optimizer.load_state_dict({**state, "master": {5: torch.ones(3)}})
    with pytest.raises(ValueError, match=r"master weight 0 has shape \(2,\), its parameter \(3,\)"):
        optimizer.load_state_dict({**state, "master": {0: torch.ones(2)}})
