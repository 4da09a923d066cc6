"""Accuracy of the diffusion task's classifier (the judge of FA and the features of FD) on held-out real images.

Loads the cached classifier of a diffusion preset (training it when it is not cached) and scores
it on the Fashion-MNIST test images, resized like the training images, and records how it labels
1,000 uniform-noise images (what FA counts when a method turns a class into noise). With
``--generator-guidance W ...`` it also loads the preset's cached original denoiser and records, per
guidance weight, the confusion matrix of its samples under the classifier (rows: the class asked
for; columns: the label given): where the samples of a poorly drawn class go. Writes JSON with the
command, commit, hardware and torch version.

    python benchmarks/diffusion_classifier.py --preset fashion-mnist-ddpm --data ../shared/data \
        --generator-guidance 2 4 --out benchmarks/results/diffusion-fashion-mnist/classifier.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from dualoptim.config import load_config
from dualoptim.diffusion.config import TASK, DiffusionConfig
from dualoptim.diffusion.data import load_fashion_mnist, load_images
from dualoptim.diffusion.metrics import class_accuracy
from dualoptim.diffusion.originals import load_or_train_classifier
from dualoptim.io import write_json_atomic
from dualoptim.paths import default_cache_dir, default_data_root
from dualoptim.runs import environment


def _generator_confusion(config, train, cache, classifier, guidances, per_class) -> dict | None:
    """Per guidance weight: the original denoiser's per-class sample accuracy and confusion matrix (DDIM, the
    preset's steps; ``per_class`` images a class from a fixed noise, seed 777, independent of the benchmark's banks)."""
    if not guidances:
        return None
    from dualoptim.diffusion.originals import build_diffusion, load_or_train_denoiser

    model, meta = load_or_train_denoiser(config, train, cache, torch.device("cpu"))
    diffusion = build_diffusion(config)
    labels = torch.arange(train.num_classes).repeat_interleave(per_class)
    noise = torch.randn((len(labels), *train.image_shape), generator=torch.Generator().manual_seed(777))
    by_guidance = {}
    for w in guidances:
        images = diffusion.sample(model, labels, noise, steps=config.sample.ddim_steps, guidance=w)
        with torch.no_grad():
            predicted = classifier(images).argmax(1)
        confusion = torch.zeros(train.num_classes, train.num_classes, dtype=torch.long)
        confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
        accuracy = {name: 100.0 * confusion[c, c].item() / per_class for c, name in enumerate(train.classes)}
        by_guidance[f"{w:g}"] = {"per_class": accuracy, "mean": sum(accuracy.values()) / len(accuracy),
                                 "confusion": confusion.tolist()}  # fmt: skip
    return {"what": "rows: class asked for; columns: label the classifier gives", "samples_per_class": per_class,
            "ddim_steps": config.sample.ddim_steps, "pretrain_steps": config.train.steps,
            "pretrain_seconds": meta.get("seconds"), "by_guidance": by_guidance}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion-mnist-ddpm")
    parser.add_argument("--data", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--generator-guidance", type=float, nargs="*", default=[], metavar="W",
                        help="also score the cached original denoiser's samples at these guidance weights")
    parser.add_argument("--generator-samples", type=int, default=40, help="samples per class for --generator-guidance")
    args = parser.parse_args()
    if args.generator_samples < 1:
        parser.error(f"--generator-samples must be >= 1, got {args.generator_samples}")
    torch.set_num_threads(1)
    env = environment()
    config = load_config(DiffusionConfig, TASK, [args.preset])
    root = Path(args.data) if args.data else default_data_root()
    train = load_images("fashion-mnist", root, config.data.image_size)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    classifier, meta = load_or_train_classifier(config, train, cache, torch.device("cpu"))
    test = load_fashion_mnist(root, test=True)
    size = config.data.image_size
    images = F.interpolate(test.images, size=(size, size), mode="area").clamp(-1, 1)
    per_class = {name: class_accuracy(classifier, images[test.labels == c], test.labels[test.labels == c])
                 for c, name in enumerate(test.classes)}  # fmt: skip
    # What the judge says about images of no class: FA counts these too when a method maps the
    # forgotten class to noise (SA) or to degenerate patterns.
    noise = torch.rand((1000, *train.image_shape), generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        predicted = classifier(noise).argmax(1)
    noise_labels = {name: 100.0 * (predicted == c).float().mean().item() for c, name in enumerate(test.classes)}
    generator = _generator_confusion(config, train, cache, classifier, args.generator_guidance, args.generator_samples)
    write_json_atomic(args.out, {
        "what": "accuracy (%) of the diffusion task's classifier on the 10,000 Fashion-MNIST test images",
        "image_size": size, "accuracy": class_accuracy(classifier, images, test.labels), "per_class": per_class,
        "uniform_noise_labels": noise_labels, "classifier_training_seconds": meta.get("seconds"),
        "generator": generator, "environment": env,
    })  # fmt: skip
    print(per_class, noise_labels)


if __name__ == "__main__":
    main()
