"""Step time and optimizer-state memory of DualOptim and DualOptimPlus against torch's AdamW.

    python benchmarks/optimizer_step.py --out benchmarks/results/optimizer_step.json

Parameters have the tensor shapes of a CIFAR ResNet-18 (11.2M parameters, 62 tensors). Every
variant steps on the same fixed gradients; variants are timed in interleaved rounds so that
machine noise hits all of them alike, and each reports the median step time over all rounds and
its ratio to AdamW (foreach) measured in the same run. DualOptim and DualOptimPlus alternate one
forget step and five retain steps, the LLM schedule.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dualoptim import AdamW8bit, DualOptim, DualOptimPlus  # noqa: E402
from dualoptim.io import write_json_atomic  # noqa: E402
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


Stepper = Callable[[int], None]


def make_variants(params: list[torch.Tensor]) -> dict[str, tuple[torch.optim.Optimizer, Stepper]]:
    """name -> (optimizer, function doing step number i). Each variant gets its own parameter copies."""

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
    return {
        "AdamW (for-loop)": plain(adamw(fresh(), foreach=False)),
        "AdamW (foreach)": plain(adamw(fresh(), foreach=True)),
        "AdamW (fused)": plain(adamw(fresh(), fused=True)),
        "SGD momentum (foreach)": plain(sgd(fresh())),
        "DualOptim forget step (AdamW foreach)": forget_only(
            DualOptim(fresh(), forget=adamw_foreach, retain=sgd)
        ),
        "DualOptim retain step (SGD foreach)": retain_only(
            DualOptim(fresh(), forget=adamw_foreach, retain=sgd)
        ),
        "DualOptim AdamW+AdamW 1:5 (foreach)": alternating(
            DualOptim(fresh(), forget=adamw_foreach, retain=adamw_foreach)
        ),
        "DualOptimPlus 1:5 (for-loop)": alternating(DualOptimPlus(fresh(), lr=1e-4, foreach=False)),
        "DualOptimPlus 1:5 (foreach)": alternating(DualOptimPlus(fresh(), lr=1e-4, foreach=True)),
        "DualOptimPlus 1:5 (fused, torch.compile)": alternating(DualOptimPlus(fresh(), lr=1e-4, fused=True)),
        "AdamW8bit": plain(AdamW8bit(fresh(), lr=1e-4, weight_decay=0.05)),
        "DualOptim 8bit forget step (AdamW8bit)": forget_only(
            DualOptim(fresh(), forget=adamw8bit, retain=sgd)
        ),
        "DualOptim 8bit AdamW8bit+AdamW8bit 1:5": alternating(
            DualOptim(fresh(), forget=adamw8bit, retain=adamw8bit)
        ),
        "DualOptimPlus 8bit 1:5": alternating(
            DualOptimPlus(fresh(), lr=1e-4, quantize_base=True, quantize_delta=True)
        ),
    }


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
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    params = [torch.randn(shape) * 0.05 for shape in resnet18_shapes()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    num_params = sum(p.numel() for p in params)
    variants = make_variants(params)

    for _, step in variants.values():
        for i in range(args.warmup):
            step(i)
    times: dict[str, list[float]] = {name: [] for name in variants}
    counters = dict.fromkeys(variants, args.warmup)
    for round_index in range(args.rounds):
        for name, (_, step) in variants.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                step(counters[name])
                times[name].append((time.perf_counter() - start) * 1e3)
                counters[name] += 1
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

    baseline = statistics.median(times["AdamW (foreach)"])
    results = []
    for name, (optimizer, _) in variants.items():
        median = statistics.median(times[name])
        results.append(
            {
                "name": name,
                "step_ms": round(median, 3),
                "step_ms_quartiles": [round(q, 3) for q in statistics.quantiles(times[name], n=4)],
                "ratio_to_adamw_foreach": round(median / baseline, 3),
                "state_bytes_per_param": round(state_bytes(optimizer) / num_params, 3),
            }
        )
    report = {
        # the provenance block of every result of this project (dualoptim.runs.environment)
        "environment": environment(["python", *sys.argv]),
        "setup": {
            "params": num_params,
            "tensors": len(params),
            "timed_steps_per_variant": args.rounds * args.steps,
            "seed": args.seed,
        },
        "results": results,
    }
    write_json_atomic(args.out, report)
    width = max(len(r["name"]) for r in results)
    print(f"{'variant':<{width}}  step ms  x AdamW(foreach)  state B/param")
    for r in results:
        print(
            f"{r['name']:<{width}}  {r['step_ms']:7.2f}  {r['ratio_to_adamw_foreach']:16.2f}  {r['state_bytes_per_param']:13.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
