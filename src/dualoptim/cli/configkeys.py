"""List every configuration key of a task (what --set and presets may change), with type, default and help."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="vision, tofu, safety, diffusion, unlearn-image, unlearn-llm or train")


def run(args: argparse.Namespace) -> int:
    import json

    from dualoptim.config import describe

    if args.task == "vision":
        from dualoptim.vision.config import VisionConfig as cls
    elif args.task == "tofu":
        from dualoptim.llm.config import TofuConfig as cls
    elif args.task == "safety":
        from dualoptim.safety.config import SafetyConfig as cls
    elif args.task == "diffusion":
        from dualoptim.diffusion.config import DiffusionConfig as cls
    elif args.task == "unlearn-image":
        from dualoptim.vision.deletion import ImageRequest as cls
    elif args.task == "unlearn-llm":
        from dualoptim.llm.deletion import LLMRequest as cls
    elif args.task == "train":
        from dualoptim.vision.fit import TrainRequest as cls
    else:
        raise ValueError(
            f"unknown task {args.task!r}; valid: vision, tofu, safety, diffusion, unlearn-image, unlearn-llm, train"
        )
    for key in describe(cls):
        if key.type == "section":
            print(f"{key.key}:  {key.help}")
        else:
            print(f"  {key.key} ({key.type}, default {json.dumps(key.default)}): {key.help}")
    return 0
