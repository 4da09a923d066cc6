"""The compiled CPU kernels (optim/_cpu.py): same results as the pure-torch paths and the float64
reference, a visible fallback without a compiler, and 8-bit state dicts of the old code still load.

The kernels are built once per machine (~2 s with g++, cached on disk); tests that need them skip,
with the reason, where they cannot be built."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from dualoptim import AdamW8bit, DualOptimPlus
from dualoptim.optim import _cpu, kernel_status
from dualoptim.optim._reference import ReferenceDualOptimPlus
from dualoptim.optim.quant import BLOCK_SIZE, Quantized, dequantize, quantize

FIXTURE = Path(__file__).with_name("fixtures") / "state_dicts_8bit.pt"
PLUS_8BIT = dict(quantize_base=True, quantize_delta=True)


def compiled_or_skip() -> None:
    if _cpu.kernels() is None:
        pytest.skip(f"CPU kernels unavailable: {kernel_status()}")


@pytest.fixture
def pure_torch(monkeypatch):
    """Run the optimizers' pure-torch paths, as on a machine without a compiler."""
    monkeypatch.setattr(_cpu, "kernels", lambda: None)


def run(factory, params, grads, objectives=None, kernels=True, monkeypatch=None):
    """Copies of ``params`` stepped through ``grads`` with the compiled kernels on or off."""
    copies = [p.clone().requires_grad_() for p in params]
    optimizer = factory(copies)
    with pytest.MonkeyPatch.context() as patch:
        if not kernels:
            patch.setattr(_cpu, "kernels", lambda: None)
        for step, step_grads in enumerate(grads):
            for p, g in zip(copies, step_grads):
                p.grad = g.clone()
            optimizer.step(**({} if objectives is None else {"objective": objectives[step]}))
    return copies, optimizer


def random_grads(params, steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    # gradient scales shift between steps, as at the start of a run and at phase changes
    return [
        [torch.randn(p.shape, generator=generator, dtype=p.dtype) * 10.0 ** (step % 4 - 2) for p in params]
        for step in range(steps)
    ]


def test_status_names_the_implementation_in_use():
    status = kernel_status()
    assert status.startswith(("compiled C++ kernels: ", "pure torch: "))
    if status.startswith("compiled"):
        assert Path(status.split(": ", 1)[1]).is_file()


def test_without_a_compiler_the_optimizers_fall_back_to_pure_torch_and_say_so(monkeypatch, caplog):
    monkeypatch.setattr(_cpu, "_compiler", lambda: None)
    _cpu._load.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="dualoptim.optim"):
            assert _cpu.kernels() is None
        assert kernel_status() == "pure torch: no C++ compiler found ($CXX, c++, g++, clang++)"
        assert "CPU kernels unavailable" in caplog.text
        params = [torch.randn(64, 80)]
        stepped, _ = run(lambda ps: DualOptimPlus(ps, lr=1e-2, **PLUS_8BIT), params, random_grads(params, 3),
                         objectives=["forget", "retain", "retain"])  # fmt: skip
        assert torch.isfinite(stepped[0]).all() and not torch.equal(stepped[0], params[0])
    finally:
        _cpu._load.cache_clear()  # later tests build (or load the cached) kernels again


def test_the_environment_switch_disables_the_kernels(monkeypatch):
    monkeypatch.setenv("DUALOPTIM_CPU_KERNELS", "0")
    _cpu._load.cache_clear()
    try:
        assert _cpu.kernels() is None
        assert kernel_status() == "pure torch: disabled by DUALOPTIM_CPU_KERNELS=0"
    finally:
        _cpu._load.cache_clear()


def test_a_failed_build_falls_back_with_the_compilers_message(monkeypatch, tmp_path):
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(_cpu, "SOURCE", broken)
    monkeypatch.setenv("DUALOPTIM_KERNEL_CACHE", str(tmp_path / "cache"))
    _cpu._load.cache_clear()
    try:
        if _cpu._compiler() is None:
            pytest.skip("no C++ compiler")
        assert _cpu.kernels() is None
        assert kernel_status().startswith("pure torch: building broken.cpp failed: ")
        assert not list((tmp_path / "cache").glob("*.partial"))  # no half-written library is left
    finally:
        _cpu._load.cache_clear()


def test_first_step_codes_equal_the_pure_torch_quantizer_bit_for_bit():
    # With betas (0, 0) the first step's moments are exactly g and g^2, so the kernel's codes and
    # absmax must be those of quant.quantize: the same code, the same nearest-entry rule.
    compiled_or_skip()
    generator = torch.Generator().manual_seed(0)
    param = torch.randn(40, 130, generator=generator)  # 5,200 elements: a partial last block
    grad = torch.randn(40, 130, generator=generator) * torch.logspace(-6, 0, 130)  # six decades per block
    _, optimizer = run(lambda ps: AdamW8bit(ps, lr=1e-3, betas=(0.0, 0.0)), [param], [[grad]])
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    for name, value, signed in (("exp_avg", grad, True), ("exp_avg_sq", grad * grad, False)):
        expected = quantize(value, signed)
        assert torch.equal(state[name], expected.codes), name
        assert torch.equal(state[name + "_absmax"], expected.absmax), name


@pytest.mark.parametrize(
    ("name", "factory", "objectives"),
    [
        ("AdamW8bit", lambda ps: AdamW8bit(ps, lr=1e-2, weight_decay=0.05), None),
        ("DualOptimPlus 8bit", lambda ps: DualOptimPlus(ps, lr=1e-2, forget_lr=3e-2, weight_decay=0.1, **PLUS_8BIT),
         ["forget", "retain", "retain", "retain", "retain", "retain"] * 2),
        ("DualOptimPlus 8-bit base", lambda ps: DualOptimPlus(ps, lr=1e-2, quantize_base=True),
         ["forget", "retain"] * 6),
        ("DualOptimPlus 8-bit delta, no base", lambda ps: DualOptimPlus(
            ps, lr=1e-2, betas=(0.9, 0.99, 1.0, 1.0), quantize_delta=True), ["forget", "retain"] * 6),
    ],
)  # fmt: skip
def test_compiled_8bit_steps_follow_the_pure_torch_path(name, factory, objectives):
    compiled_or_skip()
    generator = torch.Generator().manual_seed(2)
    params = [torch.randn(48, 100, generator=generator), torch.randn(100, generator=generator)]
    grads = random_grads(params, 12)
    fast, fast_opt = run(factory, params, grads, objectives)
    slow, slow_opt = run(factory, params, grads, objectives, kernels=False)
    for a, b, start in zip(fast, slow, params):
        # Rounding differences (fused multiply-adds) can move a moment across a code boundary; such
        # rare flips shift a coordinate by a fraction of one step, never more.
        moved = (b - start).abs().max()
        assert (a - b).abs().max() <= 0.02 * moved, name
        assert ((a - b).abs() > 1e-5).float().mean() < 0.01, name  # 1e-3 of a step (lr 1e-2): flips only
    codes = [
        (fast_opt.state[p][key], slow_opt.state[q][key]) if isinstance(fast_opt, AdamW8bit)
        else (fast_opt.state[p][part][key], slow_opt.state[q][part][key])
        for p, q in zip(fast_opt.param_groups[0]["params"][:1], slow_opt.param_groups[0]["params"][:1])
        for part in (["base", "forget", "retain"] if isinstance(fast_opt, DualOptimPlus) else [None])
        for key in ("exp_avg", "exp_avg_sq")
    ]  # fmt: skip
    for a, b in codes:
        if a.dtype == torch.uint8:
            assert (a != b).float().mean() < 1e-3, name
            assert ((a.int() - b.int()).abs() <= 1).all(), name  # a flip is to a neighbouring entry


def test_compiled_float_small_tensors_of_adamw8bit_are_plain_adamw():
    compiled_or_skip()
    params = [torch.randn(50, 30)]  # 1,500 elements: float32 moments, the plain AdamW update
    grads = random_grads(params, 8)
    fast, _ = run(lambda ps: AdamW8bit(ps, lr=1e-2, weight_decay=0.05), params, grads)
    adamw, _ = run(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.05), params, grads)
    torch.testing.assert_close(fast[0], adamw[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("betas", [(0.9, 0.95, 0.9, 0.95), (1.0, 1.0, 0.9, 0.99), (0.9, 0.99, 1.0, 1.0)])
@pytest.mark.parametrize("kernel", ["compiled C++", "torch.compile"])
def test_fused_matches_the_literal_reference_in_float64(betas, kernel, monkeypatch):
    if kernel == "compiled C++":
        compiled_or_skip()
    else:
        monkeypatch.setattr(_cpu, "kernels", lambda: None)  # the fallback: torch.compile (cached by torch)
    generator = torch.Generator().manual_seed(3)
    params = [torch.randn(70, 90, generator=generator, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    optimizer = DualOptimPlus([p.clone() for p in params], lr=1e-2, forget_lr=3e-2, betas=betas, weight_decay=0.1,
                              fused=True)  # fmt: skip
    reference = ReferenceDualOptimPlus([p.clone() for p in params], lr=1e-2, forget_lr=3e-2, betas=betas,
                                       weight_decay=0.1)  # fmt: skip
    fast = optimizer.param_groups[0]["params"]
    for step in range(30):
        objective = "forget" if step % 3 == 0 else "retain"
        grads = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in params]
        for p, g in zip(fast, grads):
            p.grad = g
        optimizer.step(objective=objective)
        reference.step(grads, objective)
        for a, b in zip(fast, reference.params):
            torch.testing.assert_close(a.detach(), b, rtol=1e-11, atol=1e-12)


def test_compiled_fused_float32_matches_the_foreach_path():
    compiled_or_skip()
    params = [torch.randn(64, 300), torch.randn(300)]
    grads = random_grads(params, 12)
    objectives = ["forget", "retain", "retain"] * 4
    fused, _ = run(lambda ps: DualOptimPlus(ps, lr=1e-2, betas=(1.0, 1.0, 0.9, 0.999), fused=True), params, grads,
                   objectives)  # fmt: skip
    foreach, _ = run(lambda ps: DualOptimPlus(ps, lr=1e-2, betas=(1.0, 1.0, 0.9, 0.999), foreach=True), params,
                     grads, objectives)  # fmt: skip
    for a, b in zip(fused, foreach):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factory", [lambda ps: AdamW8bit(ps, lr=1e-2),
                                     lambda ps: DualOptimPlus(ps, lr=1e-2, **PLUS_8BIT)],
                         ids=["AdamW8bit", "DualOptimPlus8bit"])  # fmt: skip
def test_a_moment_overflow_is_refused_naming_the_block(factory):
    compiled_or_skip()
    param = torch.zeros(4096, requires_grad=True)
    optimizer = factory([param])
    param.grad = torch.zeros(4096)
    param.grad[3 * BLOCK_SIZE + 7] = 1e30  # finite, but its square is not
    kwargs = {"objective": "forget"} if isinstance(optimizer, DualOptimPlus) else {}
    with pytest.raises(FloatingPointError, match="block 3 "):
        optimizer.step(**kwargs)
    assert torch.equal(param, torch.zeros(4096))  # the refused block kept its values


def test_float64_and_strided_tensors_take_the_pure_torch_path():
    # The kernels take contiguous float32 8-bit tensors only; others step as before.
    weight = torch.randn(80, 64, dtype=torch.float64, requires_grad=True)
    optimizer = AdamW8bit([weight], lr=1e-2)
    weight.grad = torch.randn(80, 64, dtype=torch.float64)
    optimizer.step()
    assert optimizer.state[weight]["exp_avg"].dtype == torch.uint8 and torch.isfinite(weight).all()
    strided = torch.randn(64, 80).t().requires_grad_()
    plus = DualOptimPlus([strided], lr=1e-2, **PLUS_8BIT)
    strided.grad = torch.randn(80, 64)
    plus.step(objective="forget")
    assert torch.isfinite(strided).all()


@pytest.mark.parametrize("kernels", [True, False], ids=["compiled", "pure torch"])
@pytest.mark.parametrize("name", ["AdamW8bit", "DualOptimPlus8bit"])
def test_state_dicts_saved_by_the_old_pure_torch_code_load_and_take_its_step(name, kernels, monkeypatch):
    """The fixture was written by the code before the kernels (fixtures/make_8bit_state_dicts.py)."""
    if kernels:
        compiled_or_skip()
    else:
        monkeypatch.setattr(_cpu, "kernels", lambda: None)
    saved = torch.load(FIXTURE, weights_only=True)[name]
    params = [p.clone().requires_grad_() for p in saved["params"]]
    if name == "AdamW8bit":
        optimizer = AdamW8bit(params, lr=1e-2, weight_decay=0.05)
    else:
        optimizer = DualOptimPlus(params, lr=1e-2, forget_lr=2e-2, betas=(0.9, 0.95, 0.9, 0.95), **PLUS_8BIT)
    optimizer.load_state_dict(saved["optimizer"])
    for p, g in zip(params, saved["grads"]):
        p.grad = g.clone()
    optimizer.step(**({"objective": "forget"} if name != "AdamW8bit" else {}))
    for p, before, after in zip(params, saved["params"], saved["params_after"]):
        step = (after - before).abs().max()
        # the old code's step, to rounding (a code flip moves a coordinate by a fraction of a step)
        assert (p.detach() - after).abs().max() <= 0.02 * step


def test_kernel_dequantised_moments_stay_within_one_code_step_of_float32():
    # End to end: after 20 compiled AdamW8bit steps the de-quantised moments track float32 AdamW's.
    compiled_or_skip()
    generator = torch.Generator().manual_seed(4)
    params = [torch.randn(64, 128, generator=generator)]
    grads = [[torch.randn(64, 128, generator=generator) * 1e-3 + 1e-3] for _ in range(20)]
    _, eight = run(lambda ps: AdamW8bit(ps, lr=1e-3), params, grads)
    _, full = run(lambda ps: torch.optim.AdamW(ps, lr=1e-3), params, grads)
    p8, p32 = eight.param_groups[0]["params"][0], full.param_groups[0]["params"][0]
    m8 = dequantize(Quantized(eight.state[p8]["exp_avg"], eight.state[p8]["exp_avg_absmax"], True))
    m32 = full.state[p32]["exp_avg"]
    assert ((m8 - m32).norm() / m32.norm()).item() < 0.05


def test_float_tensors_of_adamw8bit_take_non_finite_gradients_as_torch_adamw_does():
    # Only 8-bit blocks are refused (a NaN absmax would spread over the block); float32 moments of
    # small tensors follow torch.optim.AdamW, which lets the NaN through.
    compiled_or_skip()
    bias = torch.zeros(64, requires_grad=True)
    optimizer = AdamW8bit([bias], lr=1e-2)
    bias.grad = torch.full((64,), float("nan"))
    optimizer.step()
    assert torch.isnan(bias).all()
