"""benchmarks/gpu_check.sh parses, and on a machine without a GPU records every GPU step as skipped."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the check runs for minutes: run it by hand")
def test_without_a_gpu_every_gpu_step_is_skipped_with_its_reason(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "DATA": str(tmp_path / "data")}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert set(steps) == {"cuda_tests", "optimizer_llm_1b", "cifar10_resnet18", "tofu_tiny", "diffusion_tiny"}
    # The CUDA tests ran, and skipped themselves.
    assert steps["cuda_tests"]["status"] == "passed"
    assert "needs a CUDA GPU" in (tmp_path / "work" / "cuda_tests.log").read_text()
    for name in ("optimizer_llm_1b", "cifar10_resnet18", "tofu_tiny"):
        assert steps[name]["status"] == "skipped" and steps[name]["reason"] == "no CUDA GPU"
    assert steps["diffusion_tiny"]["status"] == "skipped" and steps["diffusion_tiny"]["reason"]
    assert report["environment"]["gpu"] is None
