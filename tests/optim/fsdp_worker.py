"""Run by ``torchrun --nproc_per_node 2`` from test_fsdp.py: every strategy's optimizer steps a
model sharded with FSDP2 (``fully_shard``, DTensor parameters) on 2 CPU processes (gloo).

Per strategy each rank records (in ``OUT/rank<r>.pt``) the largest difference between the
sharded run and the same steps on an unsharded copy of the model, whether the optimizer state is
sharded, and whether a run saved (model and optimizer state per rank) and resumed into fresh
objects continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import os
import sys

import torch


def build(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    # 128 x 64 = 8,192 elements: 8-bit states; each rank's shard (4,096) is a whole number of blocks
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 64))


def shard(model: torch.nn.Module) -> torch.nn.Module:
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def train(model, optimizer, strategy: str, steps: range) -> None:
    from dualoptim.strategies import STRATEGIES, set_objective

    generator = torch.Generator().manual_seed(1)
    data = [torch.randn(8, 64, generator=generator) for _ in range(20)]
    joint = STRATEGIES.get(strategy).joint
    for step in steps:
        objective = "joint" if joint else ("forget" if step % 3 == 0 else "retain")
        forget = -model(data[2 * step]).pow(2).mean()  # a forget loss pushes away, a retain loss pulls back
        retain = model(data[2 * step + 1]).pow(2).mean()
        loss = {"forget": forget, "retain": retain, "joint": forget + retain}[objective]
        loss.backward()
        set_objective(optimizer, "retain" if joint else objective)
        optimizer.step()
        optimizer.zero_grad()


def full(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone() for k, v in model.state_dict().items()}


def main(out: str) -> None:
    import torch.distributed as dist

    from dualoptim.optim._sharded import is_sharded
    from dualoptim.strategies import STRATEGIES, OptimizerSettings, build_optimizer

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    settings = OptimizerSettings(forget_lr=3e-3, retain_lr=1e-3, family="adamw", betas=(0.9, 0.95), weight_decay=0.01,
                                 forget_betas=(0.9, 0.95), forget_weight_decay=0.01)  # fmt: skip
    report = {}
    for strategy in STRATEGIES.names():
        unsharded = build()
        reference = build_optimizer(strategy, list(unsharded.parameters()), settings)
        train(unsharded, reference, strategy, range(6))
        model = shard(build())
        optimizer = build_optimizer(strategy, list(model.parameters()), settings)
        train(model, optimizer, strategy, range(3))
        # save per rank, resume into a fresh model and optimizer, and compare with going on
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, f"{out}/{strategy}-{rank}.pt")
        train(model, optimizer, strategy, range(3, 6))
        saved = torch.load(f"{out}/{strategy}-{rank}.pt", weights_only=False)
        resumed = shard(build(seed=7))
        resumed.load_state_dict(saved["model"])
        twin = build_optimizer(strategy, list(resumed.parameters()), settings)
        twin.load_state_dict(saved["optimizer"])
        train(resumed, twin, strategy, range(3, 6))
        sharded, expected, again = full(model), full(unsharded), full(resumed)
        states = [v for v in _tensors(optimizer.state_dict()) if v.dim() > 0 and v.is_floating_point()]
        report[strategy] = {
            "max_difference": max((sharded[k] - expected[k]).abs().max().item() for k in expected),
            "moved": max((sharded[k] - full(shard(build()))[k]).abs().max().item() for k in expected),
            "resume_equal": all(torch.equal(sharded[k], again[k]) for k in sharded),
            "sharded_state": any(is_sharded(v) for v in states),
        }
    torch.save(report, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()  # before exit: a live gloo group can abort the interpreter's shutdown


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1])
