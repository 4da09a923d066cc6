"""Measure the LLM deletion-request defaults of ``dualoptim unlearn`` on two model sizes (docs/unlearn.md, "LLM defaults").

No pretrained model is available offline, so each size is a Llama built from scratch that
memorises a fact set: 180 people with a random birthplace each, every third one forget, retain or
held-out (as tests/llm/test_audit.py), fine-tuned on the forget + retain rows until it answers them.
Then ``dualoptim unlearn`` (NPO+GD, dual) runs over a grid of learning rates x passes over the
forget set on each size, and each run's audit is kept: the headline outcome, the forget and
held-out changes of the headline metric and the retain drop. The rule of
:func:`dualoptim.llm.deletion.default_schedule` is read from where the headline PASSED with the
smallest retain drop.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/unlearn_defaults.py \
        --out benchmarks/results/unlearn/defaults --threads 1

Writes ``<out>/results.json`` (command, commit, machine, per-run numbers); the models, data and
unlearned outputs go to a scratch folder (``--work``, default a temporary one) and are not kept.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dualoptim.cli import main as cli
from dualoptim.io import write_text_atomic

CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Dakar", "Perth", "Rome", "Delhi", "Tokyo", "Accra",
          "Dublin", "Havana", "Kyiv", "Riga"]  # fmt: skip

#: the two sizes: (hidden, intermediate, layers, heads); hidden 256 has about 14x the parameters of hidden 64
SIZES = {"h64": (64, 128, 2, 2), "h256": (256, 512, 4, 4)}


def build_world(work: Path, people: int, size: str) -> tuple[Path, dict[str, Path], int]:
    """The fact set's JSONL files and a Llama of ``size`` fine-tuned on the forget + retain rows."""
    from dualoptim.llm.data import QAFormat
    from dualoptim.llm.models import TinyModelConfig, build_tiny_llama, finetune, train_tokenizer

    pick = random.Random(0)
    rows = [{"question": f"Where was Person{a} born?", "answer": f"Person{a} was born in {pick.choice(CITIES)}."}
            for a in range(people)]  # fmt: skip
    sets = {"forget": rows[0::3], "retain": rows[1::3], "heldout": rows[2::3]}
    files = {}
    for name, part in sets.items():
        files[name] = work / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in part))
    hidden, intermediate, layers, heads = SIZES[size]
    tokenizer = train_tokenizer([f"{r['question']} {r['answer']}" for r in rows], 400)
    config = TinyModelConfig(vocab_size=400, hidden_size=hidden, intermediate_size=intermediate, num_layers=layers,
                             num_heads=heads, max_position_embeddings=64, epochs=150, batch_size=32,
                             lr=5e-3 if hidden <= 64 else 2e-3, warmup_steps=2)  # fmt: skip
    model = build_tiny_llama(config, tokenizer, seed=0)
    finetune(model, tokenizer, sets["forget"] + sets["retain"], QAFormat(), config, 48, progress=False)
    folder = work / f"model-{size}"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, files, sum(p.numel() for p in model.parameters())


def _reuse(folder: Path, built: dict) -> tuple[Path, dict[str, Path], int, float]:
    files = {name: folder / f"{name}.jsonl" for name in ("forget", "retain", "heldout")}
    return Path(built["model"]), files, built["parameters"], built["build_seconds"]


def run_one(model: Path, files: dict[str, Path], out: Path, lr: float | None, epochs: int | None, threads: int,
            stop_every: int) -> dict:  # fmt: skip
    """One ``dualoptim unlearn``; ``lr`` and ``epochs`` None: the defaults of ``default_schedule``."""
    stop = ["--stop-when", "forget", "--set", f"stop_every={stop_every}"] if stop_every else []
    rates = ["--forget-lr", f"{lr:g}", "--lr", f"{lr:g}"] if lr is not None else []
    passes = ["--epochs", str(epochs)] if epochs is not None else []
    argv = ["unlearn", *stop, "--model", str(model), "--forget", str(files["forget"]), "--retain", str(files["retain"]),
            "--heldout", str(files["heldout"]), *rates, *passes,
            "--batch-size", "8", "--bootstrap", "300", "--device", "cpu", "--threads", str(threads), "--no-progress",
            "--set", "max_new_tokens=8", "--set", "max_length=48", "--out", str(out)]  # fmt: skip
    tick = time.perf_counter()
    status = cli(argv)
    seconds = time.perf_counter() - tick
    audit = json.loads((out / "audit.json").read_text())
    perf, criteria = audit["performance"], audit["criteria"]
    primary = audit["primary_metric"]
    return {
        "forget_lr": audit["request"]["options"]["forget_lr"], "lr": audit["request"]["options"]["lr"],
        "epochs": audit["request"]["options"]["epochs"], "defaults": audit["request"]["settings"].get("from_default_schedule"),
        "steps": audit["request"]["steps"], "exit_status": status,
        "outcome": audit["outcome"], "seconds": round(seconds, 1),
        "verdicts": {v["criterion"]: v["outcome"] for v in audit["verdicts"]},
        "forget_before": perf["forget"]["before"][primary], "forget_after": perf["forget"]["after"][primary],
        "heldout_before": perf["heldout"]["before"][primary], "heldout_after": perf["heldout"]["after"][primary],
        "retain_drop": criteria["retain_drop"]["value"], "mia_auc": criteria["mia_auc"]["value"],
        "saved_step": audit["request"]["saved_model"]["step"], "stopped_early": audit["request"]["settings"]["stopped_early"],
        "argv": argv,
    }  # fmt: skip


def best(runs: list[dict]) -> dict | None:
    """The run whose headline PASSED with the smallest retain drop (None: none passed)."""
    passed = [r for r in runs if r["outcome"] == "PASSED"]
    return min(passed, key=lambda r: (r["retain_drop"], r["steps"])) if passed else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/unlearn/defaults")
    parser.add_argument("--work", help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--sizes", default="h64,h256")
    parser.add_argument("--lrs", default="3e-5,1e-4,3e-4,1e-3,3e-3", help="forget = retain learning rates (rule: the default)")
    parser.add_argument("--epochs", default="1,3", help="passes over the forget rows (rule: the default)")
    parser.add_argument("--people", type=int, default=180)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--stop-every",
        type=int,
        default=0,
        help="run with --stop-when forget checked every N steps (0: without --stop-when, the planned steps)",
    )
    parser.add_argument("--name", default="results", help="the results file's name (<out>/<name>.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # "rule": no --forget-lr / --lr / --epochs, the defaults of default_schedule (the rule's check)
    lrs = [None if x == "rule" else float(x) for x in args.lrs.split(",")]
    epochs = [None if x == "rule" else int(x) for x in args.epochs.split(",")]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip())
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "commit": commit, "src_dirty": dirty,
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "threads": args.threads, "torch": torch.__version__},
              "data": f"{args.people} people x 1 birthplace, forget/retain/held-out every third row",
              "method": "NPO+GD", "strategy": "dual", "batch_size": 8,
              "stop_when": f"forget, checked every {args.stop_every} steps" if args.stop_every else None, "sizes": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        for size in args.sizes.split(","):
            folder = work / size
            folder.mkdir(parents=True, exist_ok=True)
            built = folder / "built.json"  # a --work folder of an earlier call: its models are reused, not rebuilt
            if built.is_file():
                model, files, parameters, seconds = _reuse(folder, json.loads(built.read_text()))
            else:
                tick = time.perf_counter()
                model, files, parameters = build_world(folder, args.people, size)
                seconds = round(time.perf_counter() - tick, 1)
                built.write_text(json.dumps({"model": str(model), "parameters": parameters, "build_seconds": seconds}))
            entry = {"parameters": parameters, "layout": dict(zip(("hidden", "intermediate", "layers", "heads"), SIZES[size])),
                     "build_seconds": seconds, "fine_tune": "150 epochs of the forget + retain rows, batch 32, AdamW",
                     "runs": []}  # fmt: skip
            result["sizes"][size] = entry
            for lr in lrs:
                for count in epochs:
                    out = folder / f"out-{lr}-{count}-{args.stop_every}"
                    run = run_one(model, files, out, lr, count, args.threads, args.stop_every)
                    entry["runs"].append(run)
                    print(f"{size} lr {run['forget_lr']:g} epochs {run['epochs']}: {run['outcome']} forget "
                          f"{run['forget_before']:.1f}->{run['forget_after']:.1f} held-out {run['heldout_before']:.1f}->"
                          f"{run['heldout_after']:.1f} retain drop {run['retain_drop']:.2f} ({run['seconds']} s)", flush=True)  # fmt: skip
                    write_text_atomic(Path(args.out) / f"{args.name}.json", json.dumps(result, indent=1))
            chosen = best(entry["runs"])
            entry["best"] = {k: chosen[k] for k in ("forget_lr", "epochs", "steps", "retain_drop")} if chosen else None
    write_text_atomic(Path(args.out) / f"{args.name}.json", json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
