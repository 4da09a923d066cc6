"""Every strategy's optimizer steps FSDP2-sharded (DTensor) parameters on 2 CPU processes (gloo)
exactly as it steps the unsharded model, and a run saved and resumed per rank continues exactly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dualoptim.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(ROOT / "tests" / "optim" / "fsdp_worker.py"), str(out),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{rank}.pt") for rank in (0, 1)]


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_sharded_steps_equal_unsharded_and_resume_exactly(reports, strategy):
    for report in reports:
        result = report[strategy]
        assert result["moved"] > 1e-3  # six steps changed the model
        # elementwise updates on each rank's shard: the unsharded run's values, to the bit
        assert result["max_difference"] == 0.0
        assert result["sharded_state"]  # the state dict holds DTensors: each rank saves its shard
        assert result["resume_equal"]
