#!/usr/bin/env bash
# The tofu-small evidence of docs/tofu.md, from an empty cache to the committed tables:
#   1. tune the forget learning rate of every (loss, strategy) on tasks 1 and 2 (`dualoptim sweep
#      --task tofu`, the default factors 0.25/0.5/1/2/4 of 1e-3, extended past an end where the best
#      sits; a pair the target's own OVR beats is refused and keeps 1e-3), three sweeps of two losses
#      each, run side by side (one torch thread each);
#   2. merge their best.yaml into one preset layer, tuned.yaml;
#   3. the benchmark with the tuned rates on tasks 1-3 (all six losses x joint/alternate/alternate-2lr/dual/dual+),
#      again three processes over one run store, then one pass that writes results.json and table.md;
#   4. the 8-bit pair (dual-8bit, dual+-8bit) for ME+GD and IDK+GD at their float32 twins' rates.
# Each step resumes: finished runs are read from the run stores, never recomputed. The target and
# the retain model of task 1 (the only one: model.retain_tasks, see docs/tofu.md) are trained and
# cached first, by one process, so that the parallel steps do not train them side by side.
#
# Usage: benchmarks/tofu_small.sh [OUT]   (default benchmarks/results)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results}
DUALOPTIM=(.venv/bin/dualoptim)
BASE=(--preset tofu-tiny --preset tofu-small --set "model.retain_tasks=[1]" --threads 1 --no-progress)
LOSS_GROUPS=("GA+GD,ME+GD" "NPO+GD,DPO+GD" "IDK+GD,IDK+AP")
export OMP_NUM_THREADS=1

# the target and task 1's retain model, once (cached), before the parallel steps
"${DUALOPTIM[@]}" tofu "${BASE[@]}" --tasks 1 --methods GA+GD --strategies dual --set unlearn.steps=1 \
  --out "$OUT/tofu-small-sweep/warm-up" > /dev/null
rm -rf "$OUT/tofu-small-sweep/warm-up"

# 1. the sweeps
pids=()
for group in "${LOSS_GROUPS[@]}"; do
  name=${group//+/}; name=${name//,/-}
  "${DUALOPTIM[@]}" sweep --task tofu "${BASE[@]}" --tasks 1,2 --select-tasks 1,2 --methods "$group" \
    --strategies joint,alternate,alternate-2lr,dual,dual+ \
    --out "$OUT/tofu-small-sweep/$name" > "$OUT/tofu-small-sweep/$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

# 2. one preset layer with every pair's tuned rate
.venv/bin/python - "$OUT/tofu-small-sweep" <<'PY'
import sys
from pathlib import Path
import yaml
root = Path(sys.argv[1])
rates = {}  # unlearn.forget_lrs and, for alternate's one rate, unlearn.lrs
for best in sorted(root.glob("*/best.yaml")):
    for field, values in yaml.safe_load(best.read_text())["unlearn"].items():
        rates.setdefault(field, {}).update(values)
text = "# learning rates of highest OVR on tasks 1-2, merged from the sweeps beside this file\n"
(root / "tuned.yaml").write_text(text + yaml.safe_dump({"unlearn": rates}, sort_keys=True))
PY

# 3. the tuned benchmark, tasks 1-3. The runs of tasks 1-2 at the selected rates are the sweeps' own:
#    their records go into the benchmark's run store, which reads a record only when its key
#    (everything that determines the run, the forget rate included) matches, and recomputes it otherwise.
.venv/bin/python - "$OUT/tofu-small-sweep" "$OUT/tofu-small/runs" <<'PY'
import json, shutil, sys
from pathlib import Path
from dualoptim.runs import slug
root, store = Path(sys.argv[1]), Path(sys.argv[2])
for summary in sorted(root.glob("*/sweep.json")):
    sweep = json.loads(summary.read_text())
    for loss, strategies in sweep["best_forget_lr"].items():
        for strategy, rate in strategies.items():
            best = min(sweep["grid"][loss][strategy], key=lambda p: abs(p["forget_lr"] - rate))
            for task in ("1", "2"):
                folder = summary.parent / f"factor-{best['factor']:g}" / "runs" / f"task{task}"
                (store / f"task{task}").mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / f"{slug(loss)}__{slug(strategy)}__seed0.json", store / f"task{task}")
                shutil.copy2(folder / "reference.json", store / f"task{task}")
PY
TUNED=(--preset "$OUT/tofu-small-sweep/tuned.yaml" --tasks 1,2,3)
pids=()
for group in "${LOSS_GROUPS[@]}"; do
  "${DUALOPTIM[@]}" tofu "${BASE[@]}" "${TUNED[@]}" --methods "$group" --strategies joint,alternate,alternate-2lr,dual,dual+ \
    --out "$OUT/tofu-small" > /dev/null 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
"${DUALOPTIM[@]}" tofu "${BASE[@]}" "${TUNED[@]}" --methods GA+GD,ME+GD,NPO+GD,DPO+GD,IDK+GD,IDK+AP \
  --strategies joint,alternate,alternate-2lr,dual,dual+ --out "$OUT/tofu-small"

# 4. the 8-bit pair
pids=()
for loss in ME+GD IDK+GD; do
  "${DUALOPTIM[@]}" tofu "${BASE[@]}" "${TUNED[@]}" --methods "$loss" --strategies dual-8bit,dual+-8bit \
    --out "$OUT/tofu-small-8bit" > /dev/null 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
"${DUALOPTIM[@]}" tofu "${BASE[@]}" "${TUNED[@]}" --methods ME+GD,IDK+GD --strategies dual-8bit,dual+-8bit \
  --out "$OUT/tofu-small-8bit"
