#!/usr/bin/env bash
# One-command GPU check: on one CUDA GPU, in under 8 minutes, run
#   1. the CUDA tests (pytest -m cuda: fused and 8-bit optimizer paths against the float64
#      reference, the non-finite guard, the unlearning loop's NonFiniteLoss on the device, and
#      FSDP2 through transformers.Trainer / accelerate: sharded steps, sharded checkpoints, resume);
#   2. the optimizer benchmark at LLM scale (1.1B parameters in bf16, ratios to AdamW fused);
#   3. a short cifar10-resnet18 run (4 epochs, seed 0, SalUn and SFRon, alternate vs dual);
#   4. a tiny TOFU run (tofu-tiny, ME+GD, alternate vs dual, task 1);
#   5. a tiny diffusion run, when this checkout has the diffusion task;
# and write one JSON, benchmarks/results/gpu/gpu_check.json (each step: status, seconds, reason).
# A step that cannot run here (no GPU, no CIFAR-10 under the data folder, no torchvision) is
# recorded as skipped with the reason; the script fails (exit 1) only when a step that ran failed.
#
#   bash benchmarks/gpu_check.sh                 # data from ../shared/data, output as above
#   DATA=/data OUT=/tmp/gpu bash benchmarks/gpu_check.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
DATA="${DATA:-../shared/data}"
OUT="${OUT:-benchmarks/results/gpu}"
WORK="$OUT/work"
mkdir -p "$WORK"
STEPS="$WORK/steps.tsv"
: > "$STEPS"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
DUALOPTIM=("$PY" -c 'import sys; from dualoptim.cli import main; sys.exit(main(sys.argv[1:]))')

# record NAME STATUS SECONDS REASON: one line of the summary
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$STEPS"; }

# step NAME TIMEOUT_S COMMAND...: run with a time limit, log to $WORK/NAME.log, record the outcome
step() {
  local name="$1" limit="$2"; shift 2
  local start end rc
  echo "== $name (limit ${limit}s)"
  start=$(date +%s)
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  rc=$?
  end=$(date +%s)
  if [[ $rc -eq 0 ]]; then
    record "$name" passed $((end - start)) ""
  elif [[ $rc -eq 124 ]]; then
    record "$name" failed $((end - start)) "timed out after ${limit}s"
  else
    record "$name" failed $((end - start)) "exit status $rc: $(tail -n 3 "$WORK/$name.log" | tr '\t\n' '  ' | cut -c1-400)"
  fi
  tail -n 5 "$WORK/$name.log"
}

has_cuda=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [[ "$has_cuda" != 1 ]]; then
  echo "no CUDA GPU: every step is recorded as skipped (the CUDA tests still run, and skip)"
fi

# 1. CUDA tests (they skip themselves without a GPU; the step then records the skips)
step cuda_tests 330 "$PY" -m pytest -m cuda -q -rs -p no:cacheprovider tests

# 2. Optimizer step at LLM scale: 1.1B parameters, bf16, six variants, ratios to AdamW (fused)
if [[ "$has_cuda" == 1 ]]; then
  step optimizer_llm_1b 180 "$PY" benchmarks/optimizer_step.py --shapes llm-1b --dtype bfloat16 \
    --device cuda --rounds 3 --steps 4 --warmup 2 --loop --loop-model resnet18 \
    --out "$OUT/optimizer_step_llm1b.json"
else
  record optimizer_llm_1b skipped 0 "no CUDA GPU"
fi

# 3. Short cifar10-resnet18 (the data must already be under $DATA/cifar10: the GPU machine may
#    have no network, and torchvision must import)
if [[ "$has_cuda" != 1 ]]; then
  record cifar10_resnet18 skipped 0 "no CUDA GPU"
elif ! "$PY" -c "import torchvision" 2>/dev/null; then
  record cifar10_resnet18 skipped 0 "torchvision does not import (pip install 'dualoptim[vision]')"
elif [[ ! -d "$DATA/cifar10/cifar-10-batches-py" ]]; then
  record cifar10_resnet18 skipped 0 "no CIFAR-10 under $DATA/cifar10 (torchvision's cifar-10-batches-py)"
else
  step cifar10_resnet18 200 "${DUALOPTIM[@]}" bench --preset cifar10-resnet18 --data "$DATA" \
    --methods SalUn,SFRon --strategies alternate,dual --seeds 0 --device cuda --no-progress \
    --set train.epochs=4 --set train.milestones=2,3 --set unlearn.schedule.outer_iterations=2 \
    --set unlearn.methods.SFRon.schedule.outer_iterations=30 --set unlearn.curve_points=2 \
    --cache-dir "$WORK/cache" --out "$OUT/cifar10-resnet18-short"
fi

# 4. Tiny TOFU (the data are the shared TOFU copy under $DATA/tofu)
if [[ "$has_cuda" != 1 ]]; then
  record tofu_tiny skipped 0 "no CUDA GPU"
elif [[ ! -d "$DATA/tofu" ]]; then
  record tofu_tiny skipped 0 "no TOFU data under $DATA/tofu"
else
  step tofu_tiny 150 "${DUALOPTIM[@]}" tofu --preset tofu-tiny --data "$DATA" --methods ME+GD \
    --strategies alternate,dual --tasks 1 --device cuda --no-progress --set model.tiny.epochs=4 \
    --set unlearn.steps=24 --cache-dir "$WORK/cache" --out "$OUT/tofu-tiny-short"
fi

# 5. Tiny diffusion, when the task exists in this checkout
if ! "${DUALOPTIM[@]}" --help 2>/dev/null | grep -q diffusion; then
  record diffusion_tiny skipped 0 "this checkout has no diffusion command"
elif [[ "$has_cuda" != 1 ]]; then
  record diffusion_tiny skipped 0 "no CUDA GPU"
else
  step diffusion_tiny 120 "${DUALOPTIM[@]}" diffusion --preset diffusion-tiny --device cuda --no-progress \
    --cache-dir "$WORK/cache" --out "$OUT/diffusion-tiny-short"
fi

# One JSON: the steps, the environment, and the optimizer benchmark's ratios when it ran
"$PY" - "$STEPS" "$OUT" <<'PYTHON'
import json, sys
from pathlib import Path

from dualoptim.io import write_json_atomic
from dualoptim.runs import environment

steps_file, out = Path(sys.argv[1]), Path(sys.argv[2])
steps = []
for line in steps_file.read_text().splitlines():
    name, status, seconds, reason = line.split("\t")
    steps.append({"name": name, "status": status, "seconds": int(seconds), "reason": reason or None})
report = {"environment": environment(["bash", "benchmarks/gpu_check.sh"]), "steps": steps}
bench = out / "optimizer_step_llm1b.json"
if bench.is_file():
    data = json.loads(bench.read_text())
    report["optimizer_llm_1b"] = {
        r["name"]: {k: r.get(k) for k in ("step_ms", "ratio_to_adamw_fused", "ratio_to_adamw_foreach")}
        for r in data["results"]
    }
    report["unlearning_loop"] = data.get("loop")
write_json_atomic(out / "gpu_check.json", report)
for s in steps:
    print(f"{s['name']:<18} {s['status']:<8} {s['seconds']:>4}s  {s['reason'] or ''}")
print(f"summary in {out / 'gpu_check.json'}")
sys.exit(1 if any(s["status"] == "failed" for s in steps) else 0)
PYTHON
