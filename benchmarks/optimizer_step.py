"""Step time and optimizer-state memory of DualOptim and DualOptimPlus against torch's AdamW.

    python benchmarks/optimizer_step.py --out benchmarks/results/optimizer_step.json
    python benchmarks/optimizer_step.py --shapes llm-1b --dtype bfloat16 --device cuda --out gpu.json
    python benchmarks/optimizer_step.py --loop --out loop.json     # also the unlearning loop's steps/s

Parameters have the tensor shapes of a CIFAR ResNet-18 (11.2M parameters, 62 tensors) or, with
``--shapes llm-1b``, of a 1.1B-parameter Llama (TinyLlama's: 22 layers, hidden 2048, MLP 5632,
4 key/value heads, vocabulary 32,000). Every variant steps on the same fixed gradients; variants
are timed in interleaved rounds so that machine noise hits all of them alike, and each reports
the median step time over all rounds and its ratios to AdamW (foreach) and AdamW (fused) measured
in the same run. DualOptim and DualOptimPlus alternate one forget step and five retain steps,
the LLM schedule. ``--loop`` adds the steps per second of the image-classification unlearning
loop (``dualoptim.vision.loop.unlearn``) against a plain PyTorch loop with the same model,
losses and optimizer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from copy import deepcopy
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dualoptim import AdamW8bit, DualOptim, DualOptimPlus  # noqa: E402
from dualoptim.io import write_json_atomic  # noqa: E402
from dualoptim.optim import _cpu, kernel_status  # noqa: E402
from dualoptim.runs import environment  # noqa: E402


def resnet18_shapes(num_classes: int = 10) -> list[tuple[int, ...]]:
    """Parameter shapes of ResNet-18 with the CIFAR stem (3x3 conv, no max-pool)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 3, 3), (64,), (64,)]
    channels = 64
    for width in (64, 128, 256, 512):
        for block in range(2):
            in_channels = channels if block == 0 else width
            shapes += [
                (width, in_channels, 3, 3),
                (width,),
                (width,),
                (width, width, 3, 3),
                (width,),
                (width,),
            ]
            if block == 0 and in_channels != width:
                shapes += [(width, in_channels, 1, 1), (width,), (width,)]
        channels = width
    return shapes + [(num_classes, 512), (num_classes,)]


def llm_shapes(layers: int = 22, hidden: int = 2048, mlp: int = 5632, kv: int = 256, vocab: int = 32000):
    """Parameter shapes of a Llama with TinyLlama-1.1B's sizes (grouped-query attention, 4 kv heads)."""
    block = [(hidden, hidden), (kv, hidden), (kv, hidden), (hidden, hidden),  # q, k, v, o
             (mlp, hidden), (mlp, hidden), (hidden, mlp), (hidden,), (hidden,)]  # gate, up, down, 2 norms
    return [(vocab, hidden)] + block * layers + [(hidden,), (vocab, hidden)]


SHAPES = {"resnet18": resnet18_shapes, "llm-1b": llm_shapes}
#: the variants of --shapes llm-1b: each holds its own parameter copies and state, so all of them
#: would not fit in one GPU's memory at 1.1B parameters
LLM_VARIANTS = ("AdamW (foreach)", "AdamW (fused)", "DualOptimPlus 1:5 (foreach)",
                "DualOptimPlus 1:5 (fused)", "AdamW8bit", "DualOptimPlus 8bit 1:5")  # fmt: skip

Stepper = Callable[[int], None]


def make_variants(
    params: list[torch.Tensor], names: tuple[str, ...] | None = None
) -> dict[str, tuple[torch.optim.Optimizer, Stepper]]:
    """name -> (optimizer, function doing step number i). Each variant gets its own parameter copies.

    ``names`` keeps only those variants (built lazily, so the others take no memory).
    """

    def fresh() -> list[torch.Tensor]:
        copies = [p.detach().clone().requires_grad_() for p in params]
        for copy, p in zip(copies, params):
            copy.grad = p.grad
        return copies

    def plain(optimizer: torch.optim.Optimizer) -> tuple[torch.optim.Optimizer, Stepper]:
        return optimizer, lambda i: optimizer.step()

    def alternating(optimizer: torch.optim.Optimizer) -> tuple[torch.optim.Optimizer, Stepper]:
        return optimizer, lambda i: optimizer.step(objective="forget" if i % 6 == 0 else "retain")

    def forget_only(optimizer: torch.optim.Optimizer) -> tuple[torch.optim.Optimizer, Stepper]:
        return optimizer, lambda i: optimizer.step(objective="forget")

    def retain_only(optimizer: torch.optim.Optimizer) -> tuple[torch.optim.Optimizer, Stepper]:
        return optimizer, lambda i: optimizer.step(objective="retain")

    adamw = partial(torch.optim.AdamW, lr=1e-4, weight_decay=0.05)
    sgd = partial(torch.optim.SGD, lr=1e-2, momentum=0.9, weight_decay=5e-4, foreach=True)
    adamw_foreach = partial(adamw, foreach=True)
    adamw8bit = partial(AdamW8bit, lr=1e-4, weight_decay=0.05)
    factories: dict[str, Callable[[], tuple[torch.optim.Optimizer, Stepper]]] = {
        "AdamW (for-loop)": lambda: plain(adamw(fresh(), foreach=False)),
        "AdamW (foreach)": lambda: plain(adamw(fresh(), foreach=True)),
        "AdamW (fused)": lambda: plain(adamw(fresh(), fused=True)),
        "SGD momentum (foreach)": lambda: plain(sgd(fresh())),
        "DualOptim forget step (AdamW foreach)": lambda: forget_only(
            DualOptim(fresh(), forget=adamw_foreach, retain=sgd)
        ),
        "DualOptim retain step (SGD foreach)": lambda: retain_only(
            DualOptim(fresh(), forget=adamw_foreach, retain=sgd)
        ),
        "DualOptim AdamW+AdamW 1:5 (foreach)": lambda: alternating(
            DualOptim(fresh(), forget=adamw_foreach, retain=adamw_foreach)
        ),
        "DualOptimPlus 1:5 (for-loop)": lambda: alternating(DualOptimPlus(fresh(), lr=1e-4, foreach=False)),
        "DualOptimPlus 1:5 (foreach)": lambda: alternating(DualOptimPlus(fresh(), lr=1e-4, foreach=True)),
        "DualOptimPlus 1:5 (fused)": lambda: alternating(DualOptimPlus(fresh(), lr=1e-4, fused=True)),
        "AdamW8bit": lambda: plain(AdamW8bit(fresh(), lr=1e-4, weight_decay=0.05)),
        "DualOptim 8bit forget step (AdamW8bit)": lambda: forget_only(
            DualOptim(fresh(), forget=adamw8bit, retain=sgd)
        ),
        "DualOptim 8bit AdamW8bit+AdamW8bit 1:5": lambda: alternating(
            DualOptim(fresh(), forget=adamw8bit, retain=adamw8bit)
        ),
        "DualOptimPlus 8bit 1:5": lambda: alternating(
            DualOptimPlus(fresh(), lr=1e-4, quantize_base=True, quantize_delta=True)
        ),
    }
    for name in ("AdamW8bit", "DualOptimPlus 8bit 1:5", "DualOptimPlus 1:5 (fused)"):
        # the same optimizers on the pure-torch path (a machine without a compiler; fused: torch.compile)
        factories[f"{name} (pure torch)"] = partial(_pure_torch, factories[name])
    chosen = names if names is not None else tuple(factories)
    unknown = [n for n in chosen if n not in factories]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; valid: {', '.join(factories)}")
    return {name: factories[name]() for name in chosen}


def _pure_torch(factory: Callable[[], tuple[torch.optim.Optimizer, Stepper]]) -> tuple[torch.optim.Optimizer, Stepper]:
    """A variant whose steps run with the compiled CPU kernels switched off."""
    optimizer, step = factory()

    def pure_step(i: int) -> None:
        kernels = _cpu.kernels
        _cpu.kernels = lambda: None
        try:
            step(i)
        finally:
            _cpu.kernels = kernels

    return optimizer, pure_step


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's state (inner optimizers included), counted once."""
    seen: set[int] = set()
    total = 0

    def visit(value: object) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            if value.data_ptr() not in seen and value.numel() > 1:
                seen.add(value.data_ptr())
                total += value.numel() * value.element_size()
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for optim in (getattr(optimizer, "forget", None), getattr(optimizer, "retain", None), optimizer):
        if optim is not None:
            for state in optim.state.values():
                visit(state)
    return total


def quantization_error(steps: int, seed: int) -> dict[str, object]:
    r"""Error of the 8-bit states on Adam-like moments: the compiled kernels and the pure-torch code
    (the only implementation before the kernels) against float32, and against each other.

    Two tensors with ResNet-18 layer shapes (1.47M parameters) get gradients
    :math:`g_t = s \odot (\mu + \xi_t)`: per-coordinate scales :math:`s` log-uniform over three
    decades, a persistent mean :math:`\mu \sim N(0, 0.3^2)` and fresh noise :math:`\xi_t \sim N(0, 1)`,
    so moments span orders of magnitude inside each 256-value block, as real Adam states do.
    AdamW8bit runs against torch AdamW, DualOptimPlus 8bit (1:5) against float32 DualOptimPlus,
    both ``steps`` steps at lr 1e-3. Reported per implementation:

    - ``param_drift``: :math:`\|\theta_{8} - \theta_{32}\| / \|\theta_{32} - \theta_0\|`;
    - ``moment_rel_error``: :math:`\|\tilde x - x\| / \|x\|` of each de-quantised moment against
      the float32 run's, after the last step (quantisation error accumulated along the run);
    and the code's own round trip on the float32 run's final moments (``code_round_trip``: norm
    and median per-element relative error), and ``compiled_vs_pure_torch`` (share of equal codes,
    largest parameter difference relative to the 8-bit drift).
    """
    from dualoptim.optim.quant import Quantized, dequantize, quantize

    shapes = [(512, 256, 3, 3), (128, 128, 3, 3)]
    generator = torch.Generator().manual_seed(seed)
    start = [torch.randn(shape, generator=generator) * 0.05 for shape in shapes]
    scales = [10.0 ** (-3 * torch.rand(shape, generator=generator)) * 1e-2 for shape in shapes]
    means = [torch.randn(shape, generator=generator) * 0.3 for shape in shapes]

    def moments(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every moment of ``param``, de-quantised, keyed 'part/name' (AdamW: 'exp_avg', ...)."""
        state = optimizer.state[param]
        parts = {k: v for k, v in state.items() if isinstance(v, dict)} or {"": state}
        found = {}
        for part, values in parts.items():
            for name in ("exp_avg", "exp_avg_sq"):
                signed = not (name == "exp_avg_sq" and part in ("", "base"))
                value = values[name]
                if value.dtype == torch.uint8:
                    value = dequantize(Quantized(value, values[name + "_absmax"], signed))
                found[f"{part}/{name}".lstrip("/")] = value.float()
        return found

    def run(factory: Callable, alternating: bool, compiled: bool) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
        params = [p.clone().requires_grad_() for p in start]
        optimizer = factory(params)
        noise = torch.Generator().manual_seed(seed + 1)
        kernels = _cpu.kernels
        if not compiled:
            _cpu.kernels = lambda: None
        try:
            for i in range(steps):
                for p, scale, mean in zip(params, scales, means):
                    p.grad = scale * (mean + torch.randn(p.shape, generator=noise))
                optimizer.step(**({"objective": "forget" if i % 6 == 0 else "retain"} if alternating else {}))
        finally:
            _cpu.kernels = kernels
        return [p.detach() for p in params], optimizer

    def norm_ratio(a: list[torch.Tensor], b: list[torch.Tensor], c: list[torch.Tensor]) -> float:
        num = sum(((x - y).double() ** 2).sum() for x, y in zip(a, b)) ** 0.5
        den = sum(((y - z).double() ** 2).sum() for y, z in zip(b, c)) ** 0.5
        return round(float(num / den), 5)

    report: dict[str, object] = {"steps": steps, "params": sum(p.numel() for p in start), "lr": 1e-3}
    cases = {
        "AdamW8bit": (lambda ps: AdamW8bit(ps, lr=1e-3, weight_decay=0.0),
                      lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.0, foreach=True), False),
        "DualOptimPlus 8bit 1:5": (lambda ps: DualOptimPlus(ps, lr=1e-3, quantize_base=True, quantize_delta=True),
                                   lambda ps: DualOptimPlus(ps, lr=1e-3), True),
    }  # fmt: skip
    for name, (eight, full, alternating) in cases.items():
        reference, reference_opt = run(full, alternating, compiled=False)
        exact = [moments(reference_opt, p) for p in reference_opt.param_groups[0]["params"]]
        entry: dict[str, object] = {}
        runs = {}
        for implementation, compiled in (("compiled", True), ("pure_torch", False)):
            if compiled and _cpu.kernels() is None:
                continue
            params, optimizer = run(eight, alternating, compiled)
            runs[implementation] = (params, optimizer)
            approx = [moments(optimizer, p) for p in optimizer.param_groups[0]["params"]]
            entry[implementation] = {
                "param_drift": norm_ratio(params, reference, start),
                "moment_rel_error": {
                    key: norm_ratio([a[key] for a in approx], [e[key] for e in exact], [torch.zeros(1)] * len(exact))
                    for key in exact[0]
                },
            }
        round_trip = {}
        for key in exact[0]:
            signed = not (key.endswith("exp_avg_sq") and not key.startswith(("forget", "retain")))
            values = [e[key] for e in exact]
            back = [dequantize(quantize(v, signed)) for v in values]
            relative = torch.cat([((b - v).abs() / v.abs())[v != 0].flatten() for b, v in zip(back, values)])
            round_trip[key] = {
                "norm": norm_ratio(back, values, [torch.zeros(1)] * len(values)),
                "median_elementwise": round(float(relative.median()), 5),
            }
        entry["code_round_trip"] = round_trip
        if len(runs) == 2:
            (fast, fast_opt), (slow, slow_opt) = runs["compiled"], runs["pure_torch"]
            codes = [
                (a, b)
                for p, q in zip(fast_opt.param_groups[0]["params"], slow_opt.param_groups[0]["params"])
                for a, b in zip(_codes(fast_opt.state[p]), _codes(slow_opt.state[q]))
            ]
            drift = sum(((x - y).double() ** 2).sum() for x, y in zip(slow, reference)) ** 0.5
            entry["compiled_vs_pure_torch"] = {
                "equal_codes": round(float(sum((a == b).sum() for a, b in codes) / sum(a.numel() for a, _ in codes)), 6),
                "param_diff_over_8bit_drift": round(
                    float(sum(((x - y).double() ** 2).sum() for x, y in zip(fast, slow)) ** 0.5 / drift), 5
                ),
            }
        report[name] = entry
    return report


def _codes(state: dict) -> list[torch.Tensor]:
    """The uint8 code tensors of one parameter's state, in a fixed order."""
    found = []
    for key in sorted(state):
        value = state[key]
        if isinstance(value, dict):
            found += _codes(value)
        elif isinstance(value, torch.Tensor) and value.dtype == torch.uint8:
            found.append(value)
    return found


def unlearning_loop_rate(rounds: int, steps: int, arch: str, device: torch.device) -> dict[str, float]:
    """Steps per second of ``dualoptim.vision.loop.unlearn`` and of a plain loop doing the same work.

    Both run NegGrad+'s forget and retain losses, 1 forget : 5 retain steps, batch 64, with the
    same model and the same ``dual`` optimizer (AdamW forget side, SGD retain side); evaluations
    are off. Rounds alternate the two loops; the medians are reported.
    """
    from dualoptim.optim import Objective
    from dualoptim.schedule import Schedule
    from dualoptim.strategies import STRATEGIES, OptimizerSettings
    from dualoptim.vision.loop import unlearn
    from dualoptim.vision.methods import build_method
    from dualoptim.vision.models import build_model

    shape = (1, 28, 28) if arch == "small-cnn" else (3, 32, 32)
    generator = torch.Generator().manual_seed(0)
    forget = (torch.randn(64 * 8, *shape, generator=generator).to(device), torch.randint(0, 10, (512,)).to(device))
    retain = (torch.randn(64 * 40, *shape, generator=generator).to(device), torch.randint(0, 10, (2560,)).to(device))
    settings = OptimizerSettings(forget_lr=1e-4, retain_lr=1e-2)
    iterations = max(1, steps // 6)
    torch.manual_seed(0)
    original = build_model(arch, shape, 10, 16 if arch == "small-cnn" else 64).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def ours() -> float:
        model = deepcopy(original)
        log = unlearn(model, build_method("NegGrad+"), forget, retain, strategy="dual", settings=settings,
                      schedule=Schedule(iterations, 1, 5), batch_size=64)  # fmt: skip
        sync()
        return log.steps / log.seconds

    def plain() -> float:
        model = deepcopy(original)
        method = build_method("NegGrad+")
        start = time.perf_counter()
        method.prepare(model, forget, retain, generator)
        optimizer = STRATEGIES.get("dual").build([p for p in model.parameters()], settings)
        model.train()
        for i in range(iterations * 6):
            objective = Objective.FORGET if i % 6 == 0 else Objective.RETAIN
            data = forget if objective is Objective.FORGET else retain
            chosen = torch.randint(0, len(data[1]), (64,), generator=generator).to(device)
            batch = (data[0][chosen], data[1][chosen])
            loss = (method.forget_loss if objective is Objective.FORGET else method.retain_loss)(model, batch, 0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step(objective=objective)
        sync()
        return iterations * 6 / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {"loop": [], "plain": []}
    ours(), plain()  # warm-up
    for _ in range(rounds):
        rates["loop"].append(ours())
        rates["plain"].append(plain())
    loop, reference = statistics.median(rates["loop"]), statistics.median(rates["plain"])
    return {
        "model": arch,
        "steps_per_run": iterations * 6,
        "loop_steps_per_s": round(loop, 2),
        "plain_steps_per_s": round(reference, 2),
        "ratio_to_plain": round(loop / reference, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds (default 6)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant per round (default 6)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed steps per variant first (default 3; compiles the fused kernel)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="resnet18", help="parameter shapes (default resnet18)")
    parser.add_argument("--layers", type=int, default=None, help="llm-1b: fewer transformer blocks (a quick smoke run)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="parameter dtype")
    parser.add_argument("--variants", default=None, help="comma-separated variant names (default: all; llm-1b: six)")
    parser.add_argument("--loop", action="store_true", help="also time the unlearning loop against a plain loop")
    parser.add_argument("--loop-model", default="small-cnn", help="model of --loop: small-cnn | resnet18")
    parser.add_argument("--quant-steps", type=int, default=100,
                        help="steps of the 8-bit quantisation-error comparison (0: skip it; default 100)")
    parser.add_argument("--note", default=None, help="a note stored in the JSON (e.g. 'machine under load')")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if args.shapes == "llm-1b":
        shapes = llm_shapes() if args.layers is None else llm_shapes(layers=args.layers)
    else:
        shapes = resnet18_shapes()
    params = [(torch.randn(shape, device=device) * 0.05).to(dtype) for shape in shapes]
    for p in params:
        p.grad = (torch.randn_like(p, dtype=torch.float32) * 1e-3).to(dtype)
    num_params = sum(p.numel() for p in params)
    if args.variants:
        names = tuple(n.strip() for n in args.variants.split(",") if n.strip())
    else:
        names = LLM_VARIANTS if args.shapes == "llm-1b" else None
    variants = make_variants(params, names)

    for _, step in variants.values():
        for i in range(args.warmup):
            step(i)
    sync()
    times: dict[str, list[float]] = {name: [] for name in variants}
    counters = dict.fromkeys(variants, args.warmup)
    for round_index in range(args.rounds):
        for name, (_, step) in variants.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                step(counters[name])
                sync()  # CUDA kernels run asynchronously: wait for the step before stopping the clock
                times[name].append((time.perf_counter() - start) * 1e3)
                counters[name] += 1
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

    baselines = {
        key: statistics.median(times[name])
        for key, name in (("foreach", "AdamW (foreach)"), ("fused", "AdamW (fused)"))
        if name in times
    }
    results = []
    for name, (optimizer, _) in variants.items():
        median = statistics.median(times[name])
        results.append(
            {
                "name": name,
                "step_ms": round(median, 3),
                "step_ms_quartiles": [round(q, 3) for q in statistics.quantiles(times[name], n=4)],
                **{f"ratio_to_adamw_{key}": round(median / base, 3) for key, base in baselines.items()},
                "state_bytes_per_param": round(state_bytes(optimizer) / num_params, 3),
            }
        )
    report = {
        # the provenance block of every result of this project (dualoptim.runs.environment)
        "environment": environment(["python", *sys.argv]),
        "setup": {
            "shapes": args.shapes,
            "params": num_params,
            "tensors": len(params),
            "device": str(device),
            "dtype": args.dtype,
            "timed_steps_per_variant": args.rounds * args.steps,
            "seed": args.seed,
            "note": args.note,
            "cpu_kernels": kernel_status(),
        },
        "results": results,
    }
    write_json_atomic(args.out, report)  # the timings are kept even if a later part fails
    if args.quant_steps and device.type == "cpu":
        report["quantization"] = quantization_error(args.quant_steps, args.seed)
    if args.loop:
        del variants, params
        report["loop"] = unlearning_loop_rate(max(3, args.rounds // 2), 60, args.loop_model, device)
    write_json_atomic(args.out, report)
    width = max(len(r["name"]) for r in results)
    print(f"{'variant':<{width}}  step ms  x AdamW(foreach)  x AdamW(fused)  state B/param")
    for r in results:
        print(
            f"{r['name']:<{width}}  {r['step_ms']:7.2f}  {r.get('ratio_to_adamw_foreach', float('nan')):16.2f}"
            f"  {r.get('ratio_to_adamw_fused', float('nan')):14.2f}  {r['state_bytes_per_param']:13.2f}"
        )
    if args.loop:
        loop = report["loop"]
        print(f"unlearning loop {loop['loop_steps_per_s']} steps/s, plain loop {loop['plain_steps_per_s']} "
              f"steps/s: {loop['ratio_to_plain']}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
