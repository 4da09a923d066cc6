"""The optimizers on a CUDA GPU: fused, multi-tensor and 8-bit paths against references, the guard.

Marked ``cuda`` and skipped without a GPU; ``benchmarks/gpu_check.sh`` runs them (``pytest -m cuda``).
"""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from dualoptim import AdamW8bit, DualOptimPlus
from dualoptim.optim._reference import ReferenceDualOptimPlus

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,), (64, 96)]
BETAS = (0.9, 0.95, 0.95, 0.999)


def params_on(device, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=generator, dtype=torch.float64).to(device, dtype).requires_grad_() for s in SHAPES]


def schedule(steps):
    return ["forget" if i % 6 == 0 else "retain" for i in range(steps)]


@pytest.mark.parametrize("path", ["foreach", "fused"])
def test_dual_optim_plus_on_cuda_matches_the_float64_reference(path):
    params = params_on("cuda", torch.float64)
    reference_params = [p.detach().cpu().clone() for p in params]
    optimizer = DualOptimPlus(params, lr=1e-2, forget_lr=3e-2, betas=BETAS, weight_decay=0.1,
                              foreach=path == "foreach", fused=path == "fused")  # fmt: skip
    reference = ReferenceDualOptimPlus(reference_params, lr=1e-2, forget_lr=3e-2, betas=BETAS, weight_decay=0.1)
    generator = torch.Generator().manual_seed(3)
    for objective in schedule(30):
        grads = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in params]
        for p, g in zip(params, grads):
            p.grad = g.to("cuda")
        optimizer.step(objective=objective)
        reference.step(grads, objective)
    for fast, slow in zip(params, reference_params):
        torch.testing.assert_close(fast.detach().cpu(), slow, rtol=1e-10, atol=1e-11)


def test_float32_fused_on_cuda_follows_the_float64_reference():
    params = params_on("cuda", torch.float32)
    reference_params = [p.detach().double().cpu().clone() for p in params]
    optimizer = DualOptimPlus(params, lr=1e-3, forget_lr=1e-3, betas=BETAS, weight_decay=0.1, fused=True)
    reference = ReferenceDualOptimPlus(reference_params, lr=1e-3, forget_lr=1e-3, betas=BETAS, weight_decay=0.1)
    generator = torch.Generator().manual_seed(4)
    for objective in schedule(30):
        grads = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in params]
        for p, g in zip(params, grads):
            p.grad = g.float().to("cuda")
        optimizer.step(objective=objective)
        reference.step([g.float().double() for g in grads], objective)
    for fast, slow in zip(params, reference_params):
        # float32 rounding over 30 steps stays below a tenth of one step (lr).
        torch.testing.assert_close(fast.detach().double().cpu(), slow, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "factory",
    [partial(AdamW8bit, lr=1e-2, weight_decay=0.01), partial(DualOptimPlus, lr=1e-2, quantize_base=True, quantize_delta=True)],
    ids=["AdamW8bit", "DualOptimPlus8bit"],
)
def test_8bit_states_on_cuda_equal_the_cpu_path_and_follow_float64(factory):
    cpu = [torch.nn.Parameter(torch.randn(64, 128, generator=torch.Generator().manual_seed(5)))]
    gpu = [torch.nn.Parameter(cpu[0].detach().clone().cuda())]
    exact = [torch.nn.Parameter(cpu[0].detach().double())]
    optimizers = [factory(cpu), factory(gpu)]
    full = torch.optim.AdamW(exact, lr=1e-2, weight_decay=0.01)
    kwargs = {"objective": "retain"} if factory.func is DualOptimPlus else {}
    generator = torch.Generator().manual_seed(6)
    for step in range(10):
        g = torch.randn(64, 128, generator=generator)
        cpu[0].grad, gpu[0].grad, exact[0].grad = g.clone(), g.cuda(), g.double()
        for optimizer in optimizers:
            optimizer.step(**kwargs)
        full.step()
        if step == 1 and factory.func is AdamW8bit:
            # Quantisation error against float64 AdamW after two steps (the second reads the
            # de-quantised moments), in units of one step: the bounds of the CPU test.
            difference = (gpu[0].detach().cpu().double() - exact[0].detach()).abs() / 1e-2
            assert difference.median() < 0.01 and difference.quantile(0.99) < 0.06 and difference.max() < 0.25
    # The same block-wise code on both devices: float32 rounding may move a value to the next
    # code entry now and then, never by much of a step.
    between = (gpu[0].detach().cpu() - cpu[0].detach()).abs() / 1e-2
    assert between.median() < 1e-3 and between.max() < 0.3


@pytest.mark.parametrize(
    "factory",
    [partial(AdamW8bit, lr=1e-2), partial(DualOptimPlus, lr=1e-2, quantize_base=True, quantize_delta=True)],
    ids=["AdamW8bit", "DualOptimPlus8bit"],
)
def test_non_finite_gradient_on_cuda_is_refused_and_leaves_the_state(factory):
    weight = torch.nn.Parameter(torch.randn(64, 128, device="cuda"))
    optimizer = factory([weight])
    kwargs = {"objective": "retain"} if factory.func is DualOptimPlus else {}
    weight.grad = torch.randn_like(weight)
    optimizer.step(**kwargs)
    before, state = weight.detach().clone(), copy.deepcopy(optimizer.state_dict())
    weight.grad = torch.randn_like(weight)
    weight.grad[3, 7] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite gradient"):
        optimizer.step(**kwargs)
    assert torch.equal(weight.detach(), before)
    after = optimizer.state_dict()["state"][0]
    expected = state["state"][0]
    flat_after, flat_expected = after.get("retain", after), expected.get("retain", expected)
    assert all(torch.equal(flat_after[k], flat_expected[k]) for k in flat_expected)


def test_unlearning_loop_on_cuda_stops_at_a_non_finite_loss():
    from dualoptim.errors import NonFiniteLoss
    from dualoptim.schedule import Schedule
    from dualoptim.strategies import OptimizerSettings
    from dualoptim.vision.loop import unlearn
    from dualoptim.vision.methods.base import Method

    class NaNLoss(Method):
        has_retain = False

        def forget_loss(self, model, batch, progress):
            return model(batch[0]).sum() * float("nan")

    model = torch.nn.Linear(8, 3).cuda()
    data = (torch.randn(32, 8, device="cuda"), torch.randint(0, 3, (32,), device="cuda"))
    with pytest.raises(NonFiniteLoss, match=r"forget loss became nan at step 0 of \d+"):
        unlearn(model, NaNLoss(), data, data, strategy="dual", settings=OptimizerSettings(1e-3, 1e-2),
                schedule=Schedule(2, None, None), batch_size=8)  # fmt: skip
