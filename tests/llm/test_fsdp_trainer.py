"""FSDP2 through ``transformers.Trainer`` / ``accelerate``: every strategy steps the sharded
(DTensor) parameters, saves sharded checkpoints and resumes from them to the same weights.

accelerate turns FSDP on only for accelerator process groups (``DistributedType.MULTI_GPU`` and
the like), never for ``MULTI_CPU``: on gloo CPU processes it silently trains an unsharded model.
So this test needs a CUDA GPU (``benchmarks/gpu_check.sh`` runs it); the optimizers' own sharded
stepping and sharded state save/load are tested on 2 CPU processes in tests/optim/test_fsdp.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (accelerate shards only on accelerators)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("strategy", ["alternate", "dual", "dual+", "dual+-8bit"])
def test_fsdp2_trainer_steps_sharded_parameters_and_resumes(strategy, tmp_path):
    processes = min(2, torch.cuda.device_count())
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    for phase in ("full", "resumed"):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                   str(ROOT / "tests" / "llm" / "fsdp_worker.py"), str(tmp_path), strategy, phase]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    full, resumed = (torch.load(tmp_path / f"rank0-{strategy}-{phase}.pt") for phase in ("full", "resumed"))
    assert full["sharded"] and resumed["sharded"]
    for name, value in full["weights"].items():
        torch.testing.assert_close(resumed["weights"][name], value, rtol=0, atol=1e-6, msg=name)
