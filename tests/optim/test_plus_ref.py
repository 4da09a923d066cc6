"""DualOptimPlusRef (``dual+-ref``): the reference code's DualOptim+ step, against its literal form
and against hand-computed numbers of the reference formula."""

from __future__ import annotations

import io
import math

import pytest
import torch

from dualoptim import DualOptimPlus, DualOptimPlusRef
from dualoptim.optim._reference import ReferenceDualOptimPlusOfficial

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,)]


def make_params(dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype).requires_grad_() for shape in SHAPES]


def schedule(steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return ["forget" if torch.rand((), generator=generator) < 0.35 else "retain" for _ in range(steps)]


@pytest.mark.parametrize("betas", [(0.9, 0.95, 0.9, 0.95), (0.9, 0.95, 0.95, 0.999), (0.0, 0.3, 0.5, 0.2)])
def test_steps_match_the_literal_reference_in_float64(betas):
    params = make_params()
    reference_params = [p.detach().clone() for p in params]
    optimizer = DualOptimPlusRef(params, lr=1e-2, forget_lr=3e-2, betas=betas, eps=1e-8, weight_decay=0.1)
    reference = ReferenceDualOptimPlusOfficial(reference_params, lr=1e-2, forget_lr=3e-2, betas=betas, eps=1e-8,
                                               weight_decay=0.1)  # fmt: skip
    generator = torch.Generator().manual_seed(2)
    for step, objective in enumerate(schedule(60)):
        grads = [torch.randn(p.shape, generator=generator, dtype=p.dtype) * 10.0 ** ((step // 20) - 1) for p in params]
        if step % 7 == 3:
            grads[1] = None  # a parameter without a gradient is skipped: no state, no decay
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.clone()
        optimizer.step(objective=objective)
        reference.step(grads, objective)
        for p, r in zip(params, reference_params):
            torch.testing.assert_close(p.detach(), r, rtol=1e-12, atol=1e-14)
    # the counters: base counts every step of the parameter, each residual its own objective's
    state = optimizer.state[params[0]]
    assert state["base"]["step"].item() == 60
    assert state["forget"]["step"].item() + state["retain"]["step"].item() == 60


def test_four_steps_match_the_reference_formula_by_hand():
    """theta = 1, lr 0.1, every beta 0.5, eps 0; gradients 2 (forget), 1 (retain), -1 (forget), 0 (retain).

    Step 1: no base yet; D1 = 0.5*2 = 1, D2 = 0.5*4 = 2; m = 1/0.5 = 2, v = 2/0.5 = 4; theta = 1 - 0.1*2/2.
      Then B1 = 1, B2 = 2.
    Step 2: base corrected for n-1 = 1 step: 2 and 4; D1r = 0.5*(1-2), D2r = 0.5*(1-4); m = -1 + 2 = 1,
      v = -3 + 4 = 1; theta -= 0.1. Then B1 = 1, B2 = 1.5.
    Step 3: base 1/0.75 = 4/3 and 1.5/0.75 = 2; D1f = 0.5*1 + 0.5*(-1-4/3) = -2/3, D2f = 0.5*2 + 0.5*(1-2) = 1/2;
      m = (-2/3)/0.75 + 4/3 = 4/9, v = (1/2)/0.75 + 2 = 8/3. Then B1 = 0, B2 = 1.25.
    Step 4: base 0 and 1.25/0.875 = 10/7; D1r = -1/4, D2r = -3/4 - 5/7 = -41/28; m = -1/3,
      v = (-41/28)/0.75 + 10/7 = -11/21 < 0: the step divides by sqrt(|v|) = sqrt(11/21).
    """
    theta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    optimizer = DualOptimPlusRef([theta], lr=0.1, betas=(0.5, 0.5, 0.5, 0.5), eps=0.0)
    expected = 1.0
    for objective, grad, update in [
        ("forget", 2.0, 2.0 / math.sqrt(4.0)),
        ("retain", 1.0, 1.0 / math.sqrt(1.0)),
        ("forget", -1.0, (4 / 9) / math.sqrt(8 / 3)),
        ("retain", 0.0, (-1 / 3) / math.sqrt(11 / 21)),
    ]:
        theta.grad = torch.tensor([grad], dtype=torch.float64)
        optimizer.step(objective=objective)
        expected -= 0.1 * update
        assert theta.item() == pytest.approx(expected, rel=1e-12)
    assert theta.item() == pytest.approx(1 - 0.1 - 0.1 - 0.1 * (4 / 9) / math.sqrt(8 / 3) + 0.1 / 3 / math.sqrt(11 / 21))
    base = optimizer.state[theta]["base"]
    assert base["exp_avg"].item() == pytest.approx(0.0) and base["exp_avg_sq"].item() == pytest.approx(0.625)


def test_differs_from_the_projects_form_after_the_first_step():
    """The same first step (no base yet in either), then apart: the project's base already holds the
    current gradient and its v is floored at m^2 (step 4 above has v < 0)."""
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    ref = DualOptimPlusRef([a], lr=0.1, betas=(0.5, 0.5, 0.5, 0.5), eps=0.0)
    ours = DualOptimPlus([b], lr=0.1, betas=(0.5, 0.5, 0.5, 0.5), eps=0.0, foreach=False)
    for step, (objective, grad) in enumerate([("forget", 2.0), ("retain", 1.0), ("forget", -1.0), ("retain", 0.0)]):
        a.grad = torch.tensor([grad], dtype=torch.float64)
        b.grad = torch.tensor([grad], dtype=torch.float64)
        ref.step(objective=objective)
        ours.step(objective=objective)
        if step == 0:
            assert a.item() == pytest.approx(b.item(), rel=1e-12)
    assert abs(a.item() - b.item()) > 1e-3


def test_abs_v_lets_a_small_retain_gradient_after_a_forget_step_move_far_above_lr():
    """What the reference's sqrt(|v|) does and the project's floor v >= m^2 prevents (float32, as both
    run): after a forget gradient 1, a retain gradient 1e-4 estimates v = g_r^2 = 1e-8 as a difference
    of two running averages near 1, whose rounding leaves |v| far below m^2."""
    moves = {}
    for cls in (DualOptimPlusRef, DualOptimPlus):
        theta = torch.zeros(1, requires_grad=True)
        optimizer = cls([theta], lr=1.0)
        theta.grad = torch.tensor([1.0])
        optimizer.step(objective="forget")
        before = theta.item()
        theta.grad = torch.tensor([1e-4])
        optimizer.step(objective="retain")
        moves[cls] = abs(theta.item() - before)
    assert moves[DualOptimPlusRef] > 100.0  # lr is 1
    assert moves[DualOptimPlus] <= 1.0


def test_state_dict_resumes_bit_for_bit_and_bf16_state_stays_float32():
    torch.manual_seed(0)
    params = [torch.randn(6, 4, dtype=torch.bfloat16, requires_grad=True)]
    optimizer = DualOptimPlusRef(params, lr=1e-3, forget_lr=2e-3, weight_decay=0.01)
    for objective in ["forget", "retain", "retain"]:
        params[0].grad = torch.randn(6, 4, dtype=torch.bfloat16)
        optimizer.step(objective=objective)
    assert optimizer.state[params[0]]["base"]["exp_avg"].dtype == torch.float32
    optimizer.set_objective("retain")
    buffer = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in params], "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    twin_params = [p.clone().requires_grad_() for p in saved["params"]]
    twin = DualOptimPlusRef(twin_params, lr=1e-3, forget_lr=2e-3, weight_decay=0.01)
    twin.load_state_dict(saved["optimizer"])
    assert twin.state[twin_params[0]]["retain"]["exp_avg_sq"].dtype == torch.float32
    assert twin.objective.value == "retain"
    grad = torch.randn(6, 4, dtype=torch.bfloat16)
    params[0].grad, twin_params[0].grad = grad.clone(), grad.clone()
    optimizer.step(objective="forget")
    twin.step(objective="forget")
    assert torch.equal(params[0], twin_params[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"betas": (0.9, 0.95, 1.0, 0.95)}, r"invalid betas .*\[0, 1\).*refuses 1"),
        ({"betas": (0.9, 0.95)}, "expected 4 values"),
        ({"lr": -1.0}, "invalid lr -1.0"),
        ({"forget_lr": float("nan")}, "invalid forget_lr nan"),
    ],
)
def test_invalid_hyperparameters_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DualOptimPlusRef([torch.zeros(2, requires_grad=True)], **kwargs)


def test_a_non_finite_gradient_is_refused_before_the_parameter_moves():
    theta = torch.ones(3, requires_grad=True)
    optimizer = DualOptimPlusRef([theta], lr=0.1)
    theta.grad = torch.tensor([1.0, float("inf"), 0.0])
    with pytest.raises(FloatingPointError, match="non-finite gradient"):
        optimizer.step(objective="forget")
    assert torch.equal(theta.detach(), torch.ones(3))


def test_scheduler_scales_the_forget_rate_in_proportion():
    theta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = DualOptimPlusRef([theta], lr=1e-2, forget_lr=4e-2, betas=(0.5, 0.5, 0.5, 0.5), eps=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
    theta.grad = torch.ones(1, dtype=torch.float64)
    optimizer.step(objective="forget")  # first step: m / sqrt(v) = 1 exactly
    assert theta.item() == pytest.approx(-4e-2 * 0.5, rel=1e-12)
    del scheduler
