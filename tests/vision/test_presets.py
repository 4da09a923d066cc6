"""The paper-scale presets resolve to the official code's numbers; the CPU presets keep their models."""

import math

import pytest
import torch

from dualoptim.config import from_dict, load_config
from dualoptim.optim import Objective
from dualoptim.runs import stable_hash
from dualoptim.schedule import plan_steps
from dualoptim.vision.augment import crop_and_flip
from dualoptim.vision.benchmark import Benchmark, _without_validation, resolve_schedule, validate
from dualoptim.vision.config import VisionConfig
from dualoptim.vision.splits import make_split
from dualoptim.vision.training import lr_factor, train_classifier


def preset(*names, **data):
    config = load_config(VisionConfig, "vision", names)
    return from_dict(VisionConfig, data, base=config) if data else config


def steps_per_objective(config, method, forget_size, retain_size):
    plan = plan_steps(
        resolve_schedule(config, method), forget_size=forget_size, retain_size=retain_size,
        batch_size=config.unlearn.batch_size,
    )  # fmt: skip
    return sum(s == (Objective.FORGET,) for s in plan), sum(s == (Objective.RETAIN,) for s in plan)


def resolved_split(config, per_class, classes):
    """Forget/retain sizes of seed 0 on a training set of ``classes`` x ``per_class`` labels."""
    labels = torch.arange(classes).repeat_interleave(per_class)
    kept = _without_validation(labels, config.data.validation_fraction, torch.Generator().manual_seed(0))
    split = make_split(labels[kept], config.data.forget, fraction=config.data.forget_fraction, seed=0)
    return len(split.forget), len(split.retain)


def test_cifar10_resnet18_matches_the_official_code():
    config = preset("cifar10-resnet18")
    validate(config)
    # 10% of each class held out, then 10% of the remaining 45,000 forgotten: 4,500 / 40,500.
    forget, retain = resolved_split(config, 5000, 10)
    assert (forget, retain) == (4500, 40500)
    # RL, SalUn, SCRUB: 10 epochs of one pass over D_f then one over D_r, batch 256.
    assert steps_per_objective(config, "SalUn", forget, retain) == (10 * 18, 10 * 159)
    # SFRon: 1,500 iterations in total, a forget step on every 5th: 300 forget, 1,500 retain.
    assert steps_per_objective(config, "SFRon", forget, retain) == (300, 1500)
    # Training: SGD, 0.1, x0.1 at epochs 91 and 136 of 182, with crop + flip augmentation.
    t = config.train
    assert (t.epochs, t.lr, t.batch_size, t.optimizer, t.augment) == (182, 0.1, 256, "sgd", True)
    per_epoch = math.ceil(45000 / t.batch_size)
    factors = [
        lr_factor(e * per_epoch, t.lr_schedule, steps_per_epoch=per_epoch, total=t.epochs * per_epoch,
                  milestones=t.milestones, gamma=t.gamma)
        for e in (0, 90, 91, 135, 136, 181)
    ]  # fmt: skip
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(91 * per_epoch - 1, "step", steps_per_epoch=per_epoch, total=1, milestones=[91]) == 1
    # Per-method forget rates: SalUn's from the official README, the rest from the defaults.
    assert config.unlearn.methods["SalUn"].forget_lr == {"alternate": 0.018}


def test_tinyimagenet_swin_t_matches_the_official_code():
    config = preset("tinyimagenet-swin-t")
    validate(config)
    assert (config.model.arch, config.model.weights) == ("swin-t", "DEFAULT")
    forget, retain = resolved_split(config, 500, 200)
    assert (forget, retain) == (9000, 81000)
    assert steps_per_objective(config, "RL", forget, retain) == (10 * 71, 10 * 633)
    # SFRon, TinyImageNet: 500 iterations, a forget step every 5th.
    assert steps_per_objective(config, "SFRon", forget, retain) == (100, 500)
    sfron = config.unlearn.methods["SFRon"]
    assert sfron.options == {"weight": 500.0, "adaptive_lambda": 0.6, "clip": 7.0}
    assert sfron.retain_lr["dual"] == 2e-5
    assert (config.train.optimizer, config.unlearn.optim.family) == ("adamw", "adamw")


@pytest.mark.parametrize(("name", "key"), [("digits", "f76516d60520cba9"), ("fashion-mnist", "55b6ecb20f7bc05b")])
def test_cpu_presets_keep_the_keys_of_their_trained_models(name, key):
    # The committed evidence was made with these cached models; new training options left at
    # their defaults must not change the cache key (and so every run key built on it).
    benchmark = Benchmark.__new__(Benchmark)
    benchmark.config = preset(name)
    assert stable_hash(benchmark._model_key()) == key
    benchmark.config = preset(name, train={"augment": True})
    assert stable_hash(benchmark._model_key()) != key


def test_validation_hold_out_is_stratified_and_fixed():
    labels = torch.tensor([0] * 20 + [1] * 10)
    kept = _without_validation(labels, 0.1, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[kept]).tolist() == [18, 9]
    assert torch.equal(kept, _without_validation(labels, 0.1, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        validate(preset("digits", data={"validation_fraction": 1.0}))


def test_bad_training_options_are_named():
    with pytest.raises(ValueError, match="unknown train.lr_schedule 'linear'"):
        validate(preset("digits", train={"lr_schedule": "linear"}))
    with pytest.raises(ValueError, match=r"train.milestones must be epochs in \[1, 29\], got \[30\]"):
        validate(preset("digits", train={"lr_schedule": "step", "milestones": [30]}))
    with pytest.raises(ValueError, match="model 'small-cnn' has no pre-trained weights"):
        validate(preset("digits", model={"weights": "DEFAULT"}))


def test_crop_and_flip_moves_pixels_and_keeps_the_input():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    copy = images.clone()
    out = crop_and_flip(images, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == images.shape and torch.equal(images, copy)
    # Without padding every output is its image or the image mirrored.
    same = crop_and_flip(images, torch.Generator().manual_seed(1), padding=0)
    for i in range(2):
        assert torch.equal(same[i], images[i]) or torch.equal(same[i], images[i].flip(-1))
    # With padding each output is a shifted window: a pixel value's column moves by at most 2,
    # and the values of one row stay in one row.
    for i in range(2):
        values = set(out[i].flatten().tolist()) - {0.0}
        assert values <= set(images[i].flatten().tolist())
    many = crop_and_flip(images.repeat(32, 1, 1, 1), torch.Generator().manual_seed(2), padding=2)
    assert any(not torch.equal(m, images[0]) for m in many[::2])  # something moved


def test_step_schedule_and_adamw_training_learn():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    before = torch.nn.functional.cross_entropy(model(x), y).item()
    train_classifier(model, x, y, epochs=6, lr=0.05, batch_size=16, optimizer="adamw",
                     lr_schedule="step", milestones=[3, 5], augment=True)  # fmt: skip
    assert torch.nn.functional.cross_entropy(model(x), y).item() < before
    with pytest.raises(ValueError, match="unknown training optimizer 'lamb'"):
        train_classifier(model, x, y, epochs=1, lr=0.1, optimizer="lamb")


def test_class_forgetting_takes_the_class_out_of_the_test_set(model_cache):
    config = preset(
        "digits", seeds=[0], cache_dir=str(model_cache), train={"epochs": 1},
        data={"forget": "class", "forget_class": 3, "forget_fraction": None},
    )  # fmt: skip
    benchmark = Benchmark(config, progress_bar=False, log=lambda _: None)
    data = benchmark.seed_data(0)
    assert 3 not in data.test[1].tolist() and 3 not in data.curve_sets[2][1].tolist()
    assert len(data.test[1]) == int((benchmark.data.test_y != 3).sum())
    assert set(data.forget[1].tolist()) == {3}


def write_tiny_imagenet(root, classes=("n01", "n02"), train=3, val=4):
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(classes))
    lines = []
    for c, wnid in enumerate(classes):
        (folder / "train" / wnid / "images").mkdir(parents=True)
        for i in range(train):
            Image.new("RGB", (8, 8), (40 * c, 10 * i, 0)).save(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
        for i in range(val):
            name = f"val_{c}_{i}.JPEG"
            Image.new("L", (8, 8), 20 * i).save(folder / "val" / "images" / name)  # a grey image, read as RGB
            lines.append(f"{name}\t{wnid}\t0\t0\t8\t8")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines))
    return folder


def test_tiny_imagenet_reads_the_official_layout(tmp_path):
    from dualoptim.vision.datasets import load_dataset

    write_tiny_imagenet(tmp_path)
    data = load_dataset("tiny-imagenet", tmp_path)
    assert data.train_x.shape == (6, 3, 8, 8) and data.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    # The second half of each class's validation images is the test set.
    assert data.test_y.tolist() == [0, 0, 1, 1] and data.num_classes == 2
    # ImageNet normalisation: a black pixel is -mean/std.
    assert data.train_x[0, 0, 0, 0].item() == pytest.approx(-0.485 / 0.229, abs=0.02)
    with pytest.raises(ValueError, match="TinyImageNet not found"):
        load_dataset("tiny-imagenet", tmp_path / "missing")


def test_swin_t_needs_torchvision_and_says_so():
    from dualoptim.vision.models import build_model

    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(ValueError, match="swin-t needs torchvision"):
            build_model("swin-t", (3, 64, 64), 200, 0, weights=None)
    else:
        model = build_model("swin-t", (3, 16, 16), 5, 0, weights=None)  # random init: no download
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 5)
