"""Audit a model as it is, without unlearning: does it still know these records?

The same audit as `dualoptim unlearn` writes (audit.json, audit.md, plots in --out), for image
classifiers (--data, --forget ids or --forget-class) and causal LMs (--forget/--retain/--heldout
JSONL rows). Without --original: the forget set against the held-out set on this one model (a
model that never knew the records passes too: this mode cannot tell forgotten from never learned).
With --original (the model before unlearning): the before/after audit, whose difference of
differences is the headline; --original equal to --model is the negative control and never passes.
Exit status 3 when a --require criterion does not pass. Nothing is trained; models and data are only read.

Example: dualoptim audit --model out/deleted/model.pt --original out/fmnist/model.pt --data fashion-mnist --forget forget.txt --out out/audit
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from dualoptim.cli.common import command_line

__all__ = ["add_arguments", "run"]

#: flags that are request keys of both kinds of model
_COMMON = ("model", "forget", "retain", "heldout", "heldout_unseen", "eval_examples", "bootstrap", "seed", "device",
           "threads", "probes", "relearn_steps", "relearn_lr")  # fmt: skip
_IMAGE = ("data", "data_root", "forget_class", "weights", "trust_pickle", "image_size", "workers")
_LLM = ("batch_size", "max_new_tokens", "max_length")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", required=True, help="the model to audit, as dualoptim unlearn reads it; never modified")
    add("--original", help="the model before unlearning: gives the before/after evidence (difference of differences)")
    add("--original-weights", help="weights file of --original torchvision:ARCH or timm:ARCH")
    add("--data", help="image data (for an LLM, --forget, --retain and --heldout are the data)")
    add("--forget", help="file of sample ids (images) or JSONL of rows (LLM), may carry \"paraphrases\"")
    add("--forget-class", metavar="NAME", help="images: every example of this class is the forget set")
    add("--retain", help="ids (images) or JSONL (LLM) of kept data; images: default every training example not forgotten")
    add("--heldout", help="data not in the forget or retain sets, the control (images: default the test split)")
    add("--heldout-unseen", action="store_true", help="you know the model never saw the held-out data (said so in the audit)")
    add("--weights", help="weights file of --model torchvision:ARCH or timm:ARCH")
    add("--trust-pickle", action="store_true", help="allow a .pt holding a pickled whole model (unpickling runs code)")
    add("--image-size", type=int, help="image side for torchvision/timm models reading image files (default 224)")
    add("--task", choices=("auto", "image", "llm"), help="model kind (default auto: from --model and --forget)")
    add("--eval-examples", type=int, metavar="N", help="examples per set scored (default: images 10000, LLM 200)")
    add("--bootstrap", type=int, metavar="N", help="bootstrap resamples of each AUC (default 1000)")
    add("--batch-size", type=int, help="LLM: rows per scoring batch (default 8)")
    add("--max-new-tokens", type=int, help="LLM: longest greedy answer (default 64)")
    add("--max-length", type=int, help="LLM: tokens per prompt + answer (default 256)")
    add("--workers", type=int, help="images: DataLoader workers (default: 0 in memory, 4 for image files)")
    add("--seed", type=int, help="seed of the scored subsets and the bootstrap")
    add("--require", action="append", metavar="CRIT<=X,...",
        help="thresholds, e.g. forget_gap<=2,mia_auc<=0.6; exit status 3 when one does not pass")  # fmt: skip
    from dualoptim.cli.unlearn import add_probe_arguments

    add_probe_arguments(parser)
    add("--data-root", help="folder of the embedded data sets (default: ../shared/data)")
    add("--device", help="cpu | cuda | cuda:N | auto (default)")
    add("--threads", type=int, metavar="N", help="torch CPU threads")
    add("--no-progress", action="store_true", help="no progress bars")
    add("--out", required=True, help="output folder of the audit (not inside a model's folder)")


def _request(args: argparse.Namespace, cls: type, names: tuple[str, ...]):
    known = {f.name for f in fields(cls)}
    values = {name: getattr(args, name) for name in names if name in known and getattr(args, name) not in (None, False)}
    if "probes" in values:
        values["probes"] = list(values["probes"])
    if args.require:
        values["require"] = list(args.require)
    return cls(**values)


def run(args: argparse.Namespace) -> int:
    from dualoptim.cli.unlearn import detect_task, print_verdicts

    task = detect_task(args)
    command = command_line("audit", args)
    if task == "llm":
        from dualoptim.llm.deletion import LLMRequest, audit_llm

        for flag in _IMAGE + ("original_weights",):
            if getattr(args, flag) not in (None, False):
                raise ValueError(f"--{flag.replace('_', '-')} is for image classifiers, not a causal LM")
        if args.no_progress:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # loading shards draws bars of its own
        audit = audit_llm(_request(args, LLMRequest, _COMMON + _LLM), args.out, original=args.original, command=command)
    else:
        from dualoptim.vision.deletion import ImageRequest, audit_images

        for flag in _LLM:
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} is for causal LMs, not an image classifier")
        audit = audit_images(_request(args, ImageRequest, _COMMON + _IMAGE), args.out, original=args.original,
                             original_weights=args.original_weights, command=command)  # fmt: skip
    return print_verdicts(audit, "audit", args.out, "audit")
