"""DualOptimPlus: fast paths against the literal reference, the two limits, the guard, resume."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from dualoptim import DualOptim, DualOptimPlus
from dualoptim.optim._reference import ReferenceDualOptimPlus

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,)]


def make_params(dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype).requires_grad_() for shape in SHAPES]


def random_schedule(steps, seed=1):
    """A mixed forget/retain sequence: runs of forget and retain steps of random length."""
    generator = torch.Generator().manual_seed(seed)
    return ["forget" if torch.rand((), generator=generator) < 0.35 else "retain" for _ in range(steps)]


def random_grads(params, generator, scale=1.0, drop=None):
    grads = [torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale for p in params]
    if drop is not None:
        grads[drop] = None
    return grads


def assign(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.clone()


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    "betas", [(0.9, 0.95, 0.95, 0.999), (0.9, 0.95, 0.9, 0.95), (0.5, 0.6, 0.7, 0.8), (0.0, 0.3, 0.0, 0.2)]
)
def test_fast_paths_match_the_literal_reference_in_float64(foreach, betas):
    params = make_params()
    reference_params = [p.detach().clone() for p in params]
    optimizer = DualOptimPlus(
        params, lr=1e-2, forget_lr=3e-2, betas=betas, eps=1e-8, weight_decay=0.1, foreach=foreach
    )
    reference = ReferenceDualOptimPlus(
        reference_params, lr=1e-2, forget_lr=3e-2, betas=betas, eps=1e-8, weight_decay=0.1
    )
    generator = torch.Generator().manual_seed(2)
    for step, objective in enumerate(random_schedule(60)):
        # Every 7th step one parameter gets no gradient: it must be skipped (no state update).
        grads = random_grads(
            params, generator, scale=10.0 ** ((step // 20) - 1), drop=1 if step % 7 == 3 else None
        )
        assign(params, grads)
        optimizer.step(objective=objective)
        reference.step(grads, objective)
        for fast, slow in zip(params, reference_params):
            torch.testing.assert_close(fast.detach(), slow, rtol=1e-12, atol=1e-13)
    # The step counters are per objective and global: n = k_f + k_r for every parameter.
    state = optimizer.state[params[0]]
    assert state["base"]["step"].item() == state["forget"]["step"].item() + state["retain"]["step"].item()


def test_foreach_handles_parameters_at_different_step_counts():
    params = make_params()
    twins = [p.detach().clone().requires_grad_() for p in params]
    fast = DualOptimPlus(params, lr=1e-2, foreach=True)
    slow = DualOptimPlus(twins, lr=1e-2, foreach=False)
    generator = torch.Generator().manual_seed(3)
    for step in range(30):
        grads = random_grads(params, generator, drop=step % len(params))
        for group in (params, twins):
            assign(group, grads)
        objective = "forget" if step % 3 == 0 else "retain"
        fast.step(objective=objective)
        slow.step(objective=objective)
    for a, b in zip(params, twins):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("foreach", [False, True])
def test_residual_off_is_one_shared_adamw_stepping_alternately(foreach):
    lr, forget_lr, b1, b2, wd = 1e-2, 5e-2, 0.9, 0.99, 0.05
    params = make_params()
    twins = [p.detach().clone().requires_grad_() for p in params]
    plus = DualOptimPlus(
        params, lr=lr, forget_lr=forget_lr, betas=(1.0, 1.0, b1, b2), weight_decay=wd, foreach=foreach
    )
    adamw = torch.optim.AdamW(twins, lr=lr, betas=(b1, b2), eps=1e-8, weight_decay=wd, foreach=foreach)
    generator = torch.Generator().manual_seed(4)
    for objective in random_schedule(50, seed=5):
        grads = random_grads(params, generator)
        assign(params, grads)
        assign(twins, grads)
        plus.step(objective=objective)
        adamw.param_groups[0]["lr"] = forget_lr if objective == "forget" else lr
        adamw.step()
        for a, b in zip(params, twins):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("foreach", [False, True])
def test_base_off_is_dual_optim_with_one_adamw_per_objective(foreach):
    lr, forget_lr, d1, d2, wd = 1e-2, 5e-2, 0.8, 0.95, 0.05
    params = make_params()
    twins = [p.detach().clone().requires_grad_() for p in params]
    plus = DualOptimPlus(
        params, lr=lr, forget_lr=forget_lr, betas=(d1, d2, 1.0, 1.0), weight_decay=wd, foreach=foreach
    )

    def adamw(rate):
        return lambda groups: torch.optim.AdamW(groups, lr=rate, betas=(d1, d2), eps=1e-8, weight_decay=wd)

    dual = DualOptim(twins, forget=adamw(forget_lr), retain=adamw(lr))
    generator = torch.Generator().manual_seed(6)
    for objective in random_schedule(50, seed=7):
        grads = random_grads(params, generator)
        assign(params, grads)
        assign(twins, grads)
        plus.step(objective=objective)
        dual.step(objective=objective)
        for a, b in zip(params, twins):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_residual_vanishes_when_forget_and_retain_gradients_agree():
    (param,) = params = [torch.zeros(50, dtype=torch.float64, requires_grad=True)]
    optimizer = DualOptimPlus(params, lr=1e-3, betas=(0.9, 0.95, 0.9, 0.95))
    generator = torch.Generator().manual_seed(8)
    direction = torch.randn(50, generator=generator, dtype=torch.float64)
    for step in range(300):
        param.grad = direction.clone()
        optimizer.step(objective="forget" if step % 2 else "retain")
    for objective in ("forget", "retain"):
        assert optimizer.state[param][objective]["exp_avg"].abs().max() < 1e-6


def test_base_vanishes_when_gradients_conflict():
    (param,) = params = [torch.zeros(50, dtype=torch.float64, requires_grad=True)]
    optimizer = DualOptimPlus(params, lr=1e-3, betas=(0.9, 0.95, 0.9, 0.95))
    direction = torch.randn(50, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    for step in range(300):
        objective = "forget" if step % 2 else "retain"
        param.grad = direction.clone() if objective == "forget" else -direction
        optimizer.step(objective=objective)
    base = optimizer.state[param]["base"]["exp_avg"].abs()
    forget = optimizer.state[param]["forget"]["exp_avg"].abs()
    # The shared first moment averages the two out (to ~5% of |g|); the deltas keep them (~105%).
    assert (base / forget).max() < 0.1


def absolute_v_step(params, grads, state, objective, lr, betas, eps):
    """The research code's rule, |v| instead of the floor, to show what the guard prevents."""
    beta_d1, beta_d2, beta_b1, beta_b2 = betas
    for p, g in zip(params, grads):
        s = state.setdefault(id(p), {"n": 0, "B1": 0 * p, "B2": 0 * p, "forget": None, "retain": None})
        delta = s[objective] = s[objective] or {"k": 0, "D1": 0 * p, "D2": 0 * p}
        s["n"] += 1
        delta["k"] += 1
        s["B1"] = beta_b1 * s["B1"] + (1 - beta_b1) * g
        s["B2"] = beta_b2 * s["B2"] + (1 - beta_b2) * g * g
        base_m, base_v = s["B1"] / (1 - beta_b1 ** s["n"]), s["B2"] / (1 - beta_b2 ** s["n"])
        delta["D1"] = beta_d1 * delta["D1"] + (1 - beta_d1) * (g - base_m)
        delta["D2"] = beta_d2 * delta["D2"] + (1 - beta_d2) * (g * g - base_v)
        m = base_m + delta["D1"] / (1 - beta_d1 ** delta["k"])
        v = base_v + delta["D2"] / (1 - beta_d2 ** delta["k"])
        p -= lr * m / (v.abs().sqrt() + eps)


@pytest.mark.parametrize("foreach", [False, True])
def test_guard_bounds_every_step_by_lr_when_gradient_scales_shift(foreach):
    lr, betas, eps = 1e-3, (0.9, 0.95, 0.9, 0.95), 1e-8
    (param,) = params = [torch.zeros(2000, dtype=torch.float64, requires_grad=True)]
    unguarded = [torch.zeros(2000, dtype=torch.float64)]
    optimizer = DualOptimPlus(params, lr=lr, betas=betas, eps=eps, foreach=foreach)
    unguarded_state: dict = {}
    generator = torch.Generator().manual_seed(10)
    worst_unguarded = 0.0
    for step in range(600):
        # Gradient scales shift by orders of magnitude mid-run, differently per objective.
        objective = "forget" if step % 6 == 0 else "retain"
        scale = {0: 1.0, 1: 1e-4, 2: 1e3, 3: 1e-2}[(step // 150) % 4] * (
            10.0 if objective == "forget" else 1.0
        )
        grad = torch.randn(2000, generator=generator, dtype=torch.float64) * scale
        before = param.detach().clone()
        param.grad = grad.clone()
        optimizer.step(objective=objective)
        assert torch.isfinite(param).all()
        assert (param.detach() - before).abs().max() <= lr * (1 + 1e-9)
        previous = unguarded[0].clone()
        absolute_v_step(unguarded, [grad], unguarded_state, objective, lr, betas, eps)
        worst_unguarded = max(worst_unguarded, (unguarded[0] - previous).abs().max().item())
    # Without the guard the same run moves some coordinate by far more than lr in one step.
    assert worst_unguarded > 100 * lr


def test_guard_is_finite_with_zero_gradients_and_tiny_eps():
    (param,) = params = [torch.ones(10, requires_grad=True)]
    optimizer = DualOptimPlus(params, lr=1e-2, eps=1e-30)
    for step in range(20):
        param.grad = torch.zeros(10) if step > 3 else torch.randn(10)
        optimizer.step(objective="forget" if step % 2 else "retain")
        assert torch.isfinite(param).all()


@pytest.mark.parametrize("foreach", [False, True])
def test_converges_on_a_quadratic(foreach):
    torch.manual_seed(0)
    target = torch.randn(20)
    param = torch.zeros(20, requires_grad=True)
    optimizer = DualOptimPlus([param], lr=0.05, forget_lr=0.05, foreach=foreach)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=100, gamma=0.5)
    for step in range(800):
        loss = 0.5 * ((param - target) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step(objective="forget" if step % 6 == 0 else "retain")
        scheduler.step()
    assert ((param - target) ** 2).sum().item() < 1e-4


def run_steps(model, optimizer, generator, steps, start):
    for step in range(start, start + steps):
        x = torch.randn(8, 6, generator=generator).to(next(model.parameters()).dtype)
        loss = model(x).float().pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step(objective="forget" if step % 5 == 0 else "retain")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_dict_resumes_bit_for_bit_through_torch_save(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).to(dtype)
    optimizer = DualOptimPlus(model.parameters(), lr=1e-2, forget_lr=2e-2, weight_decay=0.01)
    run_steps(model, optimizer, torch.Generator().manual_seed(1), 10, 0)

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed_model = copy.deepcopy(model)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = DualOptimPlus(resumed_model.parameters(), lr=1e-2, forget_lr=2e-2, weight_decay=0.01)
    resumed.load_state_dict(checkpoint["optimizer"])

    # bf16 parameters keep float32 state, also after loading (torch's loader would cast it to bf16).
    first = next(iter(resumed.state.values()))
    assert first["base"]["exp_avg"].dtype == (torch.float32 if dtype == torch.bfloat16 else dtype)
    assert first["forget"]["step"].dtype == torch.float32

    run_steps(model, optimizer, torch.Generator().manual_seed(2), 10, 10)
    run_steps(resumed_model, resumed, torch.Generator().manual_seed(2), 10, 10)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_bf16_parameters_follow_the_float32_update():
    torch.manual_seed(0)
    param32 = torch.randn(64, requires_grad=True)
    param16 = param32.detach().to(torch.bfloat16).requires_grad_()
    reference = [param16.detach().float().requires_grad_()]
    opt16 = DualOptimPlus([param16], lr=1e-2)
    opt32 = DualOptimPlus(reference, lr=1e-2)
    grad = torch.randn(64)
    param16.grad = grad.to(torch.bfloat16)
    reference[0].grad = grad.to(torch.bfloat16).float()
    opt16.step(objective="retain")
    opt32.step(objective="retain")
    assert param16.dtype == torch.bfloat16
    assert torch.equal(param16.detach(), reference[0].detach().to(torch.bfloat16))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_stock_scheduler_on_the_outer_object_scales_both_objectives():
    param = torch.zeros(3, requires_grad=True)
    optimizer = DualOptimPlus([param], lr=1e-2, forget_lr=4e-2, betas=(1.0, 1.0, 0.0, 0.0), eps=0.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    scheduler.step()  # lr halves: forget lr follows in proportion
    # betas 0 with eps 0 make the step exactly lr * sign(g): the step size reads off the lr used.
    param.grad = torch.ones(3)
    optimizer.step(objective="forget")
    assert torch.allclose(param, torch.full((3,), -2e-2))
    param.grad = torch.ones(3)
    optimizer.step(objective="retain")
    assert torch.allclose(param, torch.full((3,), -2.5e-2))


def test_param_groups_with_their_own_learning_rates():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    optimizer = DualOptimPlus(
        [{"params": [a]}, {"params": [b], "lr": 1e-1, "forget_lr": 3e-1}],
        lr=1e-2, forget_lr=2e-2, betas=(1.0, 1.0, 0.0, 0.0), eps=0.0,
    )  # fmt: skip
    for objective, expected_a, expected_b in (("forget", -2e-2, -3e-1), ("retain", -3e-2, -4e-1)):
        a.grad, b.grad = torch.ones(2), torch.ones(2)
        optimizer.step(objective=objective)
        assert torch.allclose(a, torch.full((2,), expected_a))
        assert torch.allclose(b, torch.full((2,), expected_b))


def test_parameters_without_gradients_are_skipped():
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    optimizer = DualOptimPlus([a, b], lr=1e-2)
    a.grad = torch.ones(3)
    optimizer.step(objective="forget")
    assert b not in optimizer.state and torch.equal(b, torch.ones(3))
    assert not torch.equal(a, torch.ones(3))


def test_set_objective_drives_step_without_arguments():
    param = torch.zeros(2, requires_grad=True)
    optimizer = DualOptimPlus([param], lr=1e-2)
    optimizer.set_objective("forget")
    param.grad = torch.ones(2)
    optimizer.step()
    assert optimizer.state[param]["forget"]["step"].item() == 1
    assert optimizer.state[param]["retain"]["step"].item() == 0
    loss = optimizer.step(closure=lambda: torch.tensor(3.0), objective="retain")
    assert loss.item() == 3.0 and optimizer.state[param]["retain"]["step"].item() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -1.0}, r"invalid lr -1\.0"),
        ({"forget_lr": -0.5}, r"invalid forget_lr -0\.5"),
        ({"betas": (0.9, 0.95, 1.5, 0.9)}, r"invalid beta_base1 1\.5"),
        ({"betas": (-0.1, 0.95, 0.9, 0.9)}, r"invalid beta_delta1 -0\.1"),
        ({"betas": (0.9, 0.9)}, r"invalid betas \(0\.9, 0\.9\), expected 4 values"),
        ({"eps": -1e-8}, r"invalid eps -1e-08"),
        ({"weight_decay": -0.1}, r"invalid weight_decay -0\.1"),
    ],
)
def test_invalid_hyperparameters_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DualOptimPlus([torch.zeros(1, requires_grad=True)], **kwargs)


def test_invalid_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        DualOptimPlus([])
    with pytest.raises(TypeError, match="single tensor"):
        DualOptimPlus(torch.zeros(2, requires_grad=True))
    param = torch.zeros(2, requires_grad=True)
    optimizer = DualOptimPlus([param])
    param.grad = torch.ones(2)
    with pytest.raises(ValueError, match="needs an objective"):
        optimizer.step()
    with pytest.raises(ValueError, match="objective must be 'forget' or 'retain', got 'unlearn'"):
        optimizer.step(objective="unlearn")
    param.grad = torch.ones(2).to_sparse()
    with pytest.raises(ValueError, match="sparse gradients"):
        optimizer.step(objective="forget")
    with pytest.raises(ValueError, match="expected parts base/forget/retain"):
        optimizer.load_state_dict(
            {
                "state": {0: {"exp_avg": torch.zeros(2)}},
                "param_groups": optimizer.state_dict()["param_groups"],
            }
        )


def test_step_size_matches_adam_scale_in_the_first_step():
    param = torch.zeros(4, requires_grad=True)
    optimizer = DualOptimPlus([param], lr=0.1)
    param.grad = torch.tensor([1.0, -2.0, 3.0, -4.0])
    optimizer.step(objective="retain")
    # First step: base and delta bias-corrected moments give m = g, v = max(g^2 + 0, g^2) -> sign(g).
    assert torch.allclose(param, -0.1 * torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-6)
    assert math.isclose(optimizer.state[param]["base"]["step"].item(), 1.0)


@pytest.mark.parametrize("wave", [1, 7, 64])
def test_chunked_waves_and_strided_tensors_match_the_reference(monkeypatch, wave):
    import dualoptim.optim.plus as plus

    # Tiny waves cut tensors mid-way and mix chunks of several tensors in one wave.
    monkeypatch.setattr(plus, "WAVE_ELEMENTS", wave)
    params = make_params() + [torch.randn(6, 4, dtype=torch.float64).t().requires_grad_()]  # strided
    assert not params[-1].is_contiguous()
    reference_params = [p.detach().clone() for p in params]
    optimizer = DualOptimPlus(params, lr=1e-2, forget_lr=2e-2, weight_decay=0.1, foreach=True)
    reference = ReferenceDualOptimPlus(
        reference_params, lr=1e-2, forget_lr=2e-2, betas=optimizer.defaults["betas"], weight_decay=0.1
    )
    generator = torch.Generator().manual_seed(11)
    for step, objective in enumerate(random_schedule(20, seed=12)):
        grads = random_grads(params, generator, drop=2 if step % 5 == 1 else None)
        assign(params, grads)
        optimizer.step(objective=objective)
        reference.step(grads, objective)
    for fast, slow in zip(params, reference_params):
        torch.testing.assert_close(fast.detach(), slow, rtol=1e-12, atol=1e-13)


def test_fused_compiled_kernel_matches_the_literal_reference_in_float64():
    # One compilation (~25 s on 2 cores) covers every shape: the kernel is compiled dynamic.
    for betas in [(0.9, 0.95, 0.95, 0.999), (1.0, 1.0, 0.9, 0.99)]:
        params = make_params()
        reference_params = [p.detach().clone() for p in params]
        optimizer = DualOptimPlus(params, lr=1e-2, forget_lr=3e-2, betas=betas, weight_decay=0.1, fused=True)
        reference = ReferenceDualOptimPlus(
            reference_params, lr=1e-2, forget_lr=3e-2, betas=betas, weight_decay=0.1
        )
        generator = torch.Generator().manual_seed(13)
        for step, objective in enumerate(random_schedule(25, seed=14)):
            grads = random_grads(params, generator, drop=0 if step % 6 == 2 else None)
            assign(params, grads)
            optimizer.step(objective=objective)
            reference.step(grads, objective)
        for fast, slow in zip(params, reference_params):
            torch.testing.assert_close(fast.detach(), slow, rtol=1e-11, atol=1e-12)


def test_fused_by_default_only_for_cuda_parameters_with_triton(monkeypatch):
    import dualoptim.optim.plus as plus

    params = make_params(torch.float32)
    optimizer = DualOptimPlus(params, lr=1e-3)
    assert optimizer.param_groups[0]["fused"] is None
    # On the CPU the default takes the foreach path, whether Triton is installed or not.
    monkeypatch.setattr(plus, "_triton_available", lambda: True)
    monkeypatch.setattr(plus, "_fused_dual_optim_plus", lambda *a, **k: pytest.fail("fused on the CPU"))
    assign(params, random_grads(params, torch.Generator().manual_seed(0)))
    optimizer.step(objective="retain")
    assert DualOptimPlus(params, lr=1e-3, fused=False).param_groups[0]["fused"] is False
