"""Train an image classifier on an embedded or local data set, to unlearn from with `dualoptim unlearn`.

Writes model.pt (or model.safetensors) and train-ids.txt (the ids of the examples it was trained on).

Example: dualoptim train --data fashion-mnist --subset 10000 --epochs 20 --out out/fmnist
"""

from __future__ import annotations

import argparse

__all__ = ["FLAGS", "add_arguments", "run"]

FLAGS = ("data", "data_root", "subset", "exclude", "arch", "width", "image_size", "channels", "epochs", "lr", "batch_size",
         "seed", "format", "device", "threads", "workers")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--data", required=True, help="digits | fashion-mnist | IDX folder | image folder | CSV of path,label")
    add("--subset", type=int, metavar="N", help="train on a fixed random subset of N examples")
    add("--exclude", metavar="FILE", help="ids left out of training (retrain without a forget set: the audit's positive control)")
    add("--arch", help="small-cnn (default) | resnet18")
    add("--width", type=int, help="channels of the first stage (default 16)")
    add("--image-size", type=int, help="image side for image files (default 32)")
    add("--channels", type=int, help="1 or 3 for image files (default 3)")
    add("--epochs", type=int, help="training epochs (default 20)")
    add("--lr", type=float, help="SGD learning rate (default 0.05)")
    add("--batch-size", type=int, help="mini-batch size (default 128)")
    add("--seed", type=int)
    add("--format", choices=("pt", "safetensors"), help="checkpoint format (default pt)")
    add("--workers", type=int, help="DataLoader workers for image files (default 2)")
    add("--preset", action="append", default=[], metavar="FILE",
        help="YAML file of training keys; repeat to layer them (later wins)")
    add("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="any key of `dualoptim config train`")
    add("--data-root", help="folder of the embedded data sets (default: ../shared/data)")
    add("--device", help="cpu | cuda | cuda:N | auto (default)")
    add("--threads", type=int, metavar="N", help="torch CPU threads")
    add("--no-progress", action="store_true", help="no progress bars")
    add("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    from dualoptim.cli.common import Flag, command_line, config_from_args
    from dualoptim.vision.fit import TrainRequest, train_images

    request = config_from_args(args, TrainRequest, "train", {name: Flag(name, is_list=False) for name in FLAGS})
    meta = train_images(request, args.out, progress_bar=not args.no_progress, command=command_line("train", args))
    accuracy = ", ".join(f"{k} accuracy {v:.2f}%" for k, v in meta["accuracy"].items())
    print(f"trained {meta['arch']} on {meta['examples']} examples in {meta['seconds']:.1f} s: {accuracy}")
    print(f"model and train-ids.txt in {args.out}")
    return 0
