"""Honour a deletion request on your own model and data: unlearn, save the model, write an audit.

Image classifiers (a project checkpoint, torchvision:/timm: ARCH with --weights, or a Hugging Face
folder) with data as digits | fashion-mnist | an IDX folder | an image folder | a CSV of
path,label; causal LMs (a transformers folder) with --forget/--retain JSONL of
{"question","answer"} or {"messages": [...]} rows. --out receives the unlearned model in the
input's format, audit.json, audit.md and plots: each criterion PASSED, FAILED or INCONCLUSIVE.
Exit status 3 when a --require criterion does not pass.

Example: dualoptim unlearn --model out/fmnist/model.pt --data fashion-mnist --forget forget.txt --out out/deleted
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dualoptim.cli.common import command_line

__all__ = ["IMAGE_FLAGS", "LLM_FLAGS", "add_arguments", "add_probe_arguments", "detect_task", "print_verdicts", "run"]

#: flag (argparse dest) -> ImageRequest key
IMAGE_FLAGS = ("model", "weights", "trust_pickle", "image_size", "data", "forget", "forget_class", "retain", "heldout",
               "method", "strategy", "epochs", "steps", "forget_lr", "lr", "batch_size", "device", "threads", "workers",
               "checkpoint_every", "seed", "eval_examples", "bootstrap", "data_root", "heldout_unseen", "relearn_steps",
               "relearn_lr")  # fmt: skip
#: flag (argparse dest) -> LLMRequest key
LLM_FLAGS = ("model", "forget", "retain", "heldout", "method", "strategy", "epochs", "steps", "forget_lr", "lr",
             "batch_size", "device", "threads", "checkpoint_every", "seed", "eval_examples", "bootstrap", "heldout_unseen",
             "relearn_steps", "relearn_lr")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", required=True, help="the model to unlearn from (see above); never modified")
    add("--data", help="image data (for an LLM, --forget and --retain are the data)")
    add("--forget", help="file of sample ids (images) or JSONL of rows (LLM) to forget")
    add("--forget-class", metavar="NAME", help="images: forget every example of this class")
    add("--retain", help="ids (images) or JSONL (LLM) to keep; images: default every training example not forgotten")
    add("--heldout", help="data not in the forget or retain sets, the audit's control (images: default the test split)")
    add("--heldout-unseen", action="store_true", help="you know the model never saw the held-out data (said so in the audit)")
    add("--weights", help="weights file of --model torchvision:ARCH or timm:ARCH")
    add("--trust-pickle", action="store_true", help="allow a .pt holding a pickled whole model (unpickling runs code)")
    add("--image-size", type=int, help="image side for torchvision/timm models reading image files (default 224)")
    add("--task", choices=("auto", "image", "llm"), help="model kind (default auto: from --model and --forget)")
    add("--method", help="images: FT, GA, NegGrad+, RL, SalUn, SCRUB, SFRon (default NegGrad+); LLM: e.g. NPO+GD (default)")
    add("--strategy", help="joint, alternate, dual (default), dual+, dual-8bit, dual+-8bit")
    add("--epochs", type=int, help="passes over the forget set (images: default 5; LLM: from the model size, docs/unlearn.md)")
    add("--steps", type=int, help="total optimizer steps instead of --epochs")
    add("--forget-lr", type=float, help="forget learning rate (images: default the strategy's; LLM: from the model size, docs/unlearn.md)")
    add("--lr", type=float, help="retain learning rate (images: default the strategy's; LLM: from the model size, docs/unlearn.md)")
    add("--batch-size", type=int, help="mini-batch size (images: default 64, LLM 8)")
    add("--workers", type=int, help="DataLoader workers (default: 0 in memory, 4 for image files)")
    add("--checkpoint-every", type=int, metavar="N", help="save a resumable checkpoint every N steps")
    add("--eval-examples", type=int, metavar="N", help="examples per set scored for the audit (default: images 10000, LLM 200)")
    add("--bootstrap", type=int, metavar="N", help="bootstrap resamples of each AUC (default 1000)")
    add("--seed", type=int)
    add("--require", action="append", metavar="CRIT<=X,...",
        help="audit thresholds, e.g. mia_auc<=0.55,retain_drop<=2; exit status 3 when one fails")  # fmt: skip
    add_probe_arguments(parser)
    add("--stop-when", dest="stop_when", action="append", choices=("forget", "retain"),
        help="LLM: stop once the forget rows' answer loss reaches the held-out rows' (forget), or once the retain "
        "answer probability fell more than retain_budget (5) points (retain); checked every stop_every (10) steps")  # fmt: skip
    add("--preset", action="append", default=[], metavar="FILE",
        help="YAML file of request keys (e.g. a team's standard settings); repeat to layer them (later wins)")  # fmt: skip
    add("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="any request key (dualoptim config unlearn-image | unlearn-llm), e.g. --set method_options.mask_ratio=0.3")  # fmt: skip
    add("--data-root", help="folder of the embedded data sets (default: ../shared/data)")
    add("--device", help="cpu | cuda | cuda:N | auto (default)")
    add("--threads", type=int, metavar="N", help="torch CPU threads")
    add("--no-progress", action="store_true", help="no progress bars")
    add("--out", required=True, help="output folder: the unlearned model and the audit")


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """``--probe relearn|int8|4bit`` and the relearning probe's size (both commands, both model kinds)."""
    parser.add_argument("--probe", dest="probes", action="append", choices=("relearn", "int8", "4bit"),
                        help="robustness probe of the audit (repeat): relearn (k fine-tuning steps on the retain set, "
                        "then on a few forget rows), int8 (dynamic quantisation, CPU), 4bit (bitsandbytes, CUDA)")  # fmt: skip
    parser.add_argument("--relearn-steps", type=int, metavar="K", help="relearn probe: fine-tuning steps (default 5)")
    parser.add_argument("--relearn-lr", type=float, help="relearn probe: learning rate (default: images 0.01 SGD, LLM 1e-05 AdamW)")


def detect_task(args: argparse.Namespace) -> str:
    """``llm`` for a transformers causal-LM folder or JSONL forget rows, else ``image``."""
    if args.task not in (None, "auto"):
        return args.task
    if args.forget and args.forget.endswith(".jsonl"):
        return "llm"
    if args.model.lower().endswith(".gguf") or (Path(args.model).is_dir() and any(Path(args.model).glob("*.gguf"))):
        return "llm"  # a language model in llama.cpp's format (refused with what to do)
    config = Path(args.model) / "config.json"
    if config.is_file():
        try:
            architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        except json.JSONDecodeError:
            architectures = []
        if any(a.endswith("ForCausalLM") for a in architectures):
            return "llm"
    return "image"


def _request(args: argparse.Namespace, cls: type, flags: tuple[str, ...], task: str):
    """Defaults <- ``--preset`` files <- ``--set`` <- the explicit flags (``--require`` items are comma-separated)."""
    from dualoptim.cli.common import Flag, config_from_args

    return config_from_args(args, cls, task, {**{name: Flag(name, is_list=False) for name in flags},
                                              "require": Flag("require"), "probes": Flag("probes"),
                                              **({"stop_when": Flag("stop_when")} if task == "unlearn-llm" else {})})  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from dualoptim.errors import NonFiniteLoss

    try:
        return _run(args)
    except NonFiniteLoss as error:
        # not bad input but a run that diverged: one line and the usual remedy, exit status 1
        print(f"dualoptim unlearn: error: unlearning diverged: {error}; try a smaller --forget-lr", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    task = detect_task(args)
    if task == "llm":
        from dualoptim.llm.deletion import LLMRequest, unlearn_llm

        for flag in ("data", "forget_class", "weights", "image_size"):
            if getattr(args, flag) not in (None, False):
                raise ValueError(f"--{flag.replace('_', '-')} is for image classifiers, not a causal LM")
        audit = unlearn_llm(_request(args, LLMRequest, LLM_FLAGS, "unlearn-llm"), args.out,
                            progress_bar=not args.no_progress, command=command_line("unlearn", args))  # fmt: skip
    else:
        from dualoptim.vision.deletion import ImageRequest, unlearn_images

        if args.stop_when:
            raise ValueError("--stop-when is for causal LMs, not an image classifier")
        audit = unlearn_images(_request(args, ImageRequest, IMAGE_FLAGS, "unlearn-image"), args.out,
                               progress_bar=not args.no_progress, command=command_line("unlearn", args))  # fmt: skip
    return print_verdicts(audit, "unlearn", args.out, "unlearned model and audit")


def print_verdicts(audit: dict, command: str, out: str, what: str) -> int:
    """One line per criterion, the overall outcome, where the files are; the exit status (3: a --require did not pass)."""
    from dualoptim.audit import exit_status
    from dualoptim.audit.record import verdict_line

    for verdict in audit["verdicts"]:
        print(verdict_line(verdict))
    print(f"outcome: {audit['outcome']}")
    print(f"{what} (audit.md, audit.json) in {out}")
    status = exit_status(audit)
    if status:
        print(f"dualoptim {command}: a --require criterion did not pass (FAILED or INCONCLUSIVE)", flush=True)
    return status
