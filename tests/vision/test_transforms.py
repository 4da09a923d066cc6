"""Per-example training transforms of image files (vision/transforms.py) and the folders they stream
from: a class-per-folder set and the official TinyImageNet layout, written as tiny PNG/JPEG files."""

from __future__ import annotations

import pytest
import torch

from dualoptim.vision.sources import ImageTransform, LoaderSource, open_samples
from dualoptim.vision.transforms import AugmentedImages, TrainAugment, resize_bicubic

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)


def write_rgb(path, seed, size=8):
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size, size, 3), generator=generator, dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.numpy(), mode="RGB").save(path)


@pytest.fixture
def folder(tmp_path):
    """3 classes x 4 RGB 8x8 PNG images, one sub-folder per class."""
    for label in range(3):
        for i in range(4):
            write_rgb(tmp_path / "images" / f"class{label}" / f"{i}.png", seed=10 * label + i)
    return tmp_path / "images"


def test_crop_pads_with_the_fill_colour_and_shifts_the_image():
    image = torch.arange(2 * 6 * 6, dtype=torch.float32).view(2, 6, 6)
    augment = TrainAugment(padding=2, flip=False)
    seen = set()
    for seed in range(40):
        out = augment(image, torch.Generator().manual_seed(seed), fill=[-1.0, -2.0])
        assert out.shape == image.shape
        # the window is the padded image at some offset: every value is the image's or the fill
        padded = torch.full((2, 10, 10), 0.0)
        padded[0], padded[1] = -1.0, -2.0
        padded[:, 2:8, 2:8] = image
        offsets = [(t, c) for t in range(5) for c in range(5) if torch.equal(padded[:, t : t + 6, c : c + 6], out)]
        assert len(offsets) == 1
        seen.add(offsets[0])
    assert len(seen) > 10  # the offset is random over the 5 x 5 positions


def test_flip_happens_about_half_the_time_and_resize_gives_the_model_size():
    image = torch.rand(3, 8, 8)
    augment = TrainAugment(padding=0, flip=True, resize=16)
    flips = 0
    for seed in range(200):
        out = augment(image, torch.Generator().manual_seed(seed))
        assert out.shape == (3, 16, 16)
        flips += torch.allclose(out, resize_bicubic(image.flip(-1), 16))
    assert 70 < flips < 130
    with pytest.raises(ValueError, match="padding must be >= 0"):
        TrainAugment(padding=-1)


def test_each_example_is_augmented_by_its_own_seed_whatever_the_order():
    images = [(torch.rand(3, 8, 8), torch.tensor(i)) for i in range(6)]
    data = AugmentedImages(images, TrainAugment(padding=4), seed=7)
    forward = [data[i][0] for i in range(6)]
    backward = [data[i][0] for i in reversed(range(6))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))
    other = AugmentedImages(images, TrainAugment(padding=4), seed=8)
    assert any(not torch.equal(a, other[i][0]) for i, a in enumerate(forward))


def test_folder_stream_is_augmented_per_pass_and_evaluation_is_not(folder):
    transform = ImageTransform(3, (8, 8), MEAN, STD)
    samples, test = open_samples(str(folder), transform=transform)
    assert test is None and len(samples) == 12
    source = LoaderSource(samples, torch.arange(12), torch.device("cpu"), augment=TrainAugment(padding=2, resize=16))
    stream = source.stream(12, torch.Generator().manual_seed(0))
    first, labels1 = stream.next()
    second, labels2 = stream.next()
    assert first.shape == (12, 3, 16, 16)
    assert torch.equal(labels1, samples.labels[torch.randperm(12, generator=torch.Generator().manual_seed(0))])
    # the same image in two passes gets another crop/flip
    plain = torch.stack([transform(samples.dataset.paths[i]) for i in range(12)])
    assert not torch.equal(first, second) and labels2.shape == (12,)
    # evaluation batches are the plain decoded images
    evaluated = torch.cat([x for x, _ in source.batches(5)])
    assert torch.equal(evaluated, plain)
    # padding is black in normalised units, as torchvision pads before normalising
    black = torch.tensor([-m / s for m, s in zip(MEAN, STD)])
    unresized = LoaderSource(samples, torch.arange(12), torch.device("cpu"), augment=TrainAugment(padding=3))
    batch, _ = unresized.stream(12, torch.Generator().manual_seed(1)).next()
    border = torch.cat([batch[:, :, 0, :], batch[:, :, -1, :], batch[:, :, :, 0], batch[:, :, :, -1]], dim=2)
    assert (border == black.view(1, 3, 1)).any()


def test_a_resumed_augmented_stream_repeats_the_uninterrupted_one(folder):
    samples, _ = open_samples(str(folder), transform=ImageTransform(3, (8, 8), MEAN, STD))
    source = LoaderSource(samples, torch.arange(12), torch.device("cpu"), augment=TrainAugment(padding=2))
    stream = source.stream(5, torch.Generator().manual_seed(3))
    for _ in range(4):  # into the second pass
        stream.next()
    saved = stream.state_dict()
    generator_state = stream.generator.get_state()
    expected = [stream.next()[0] for _ in range(4)]
    twin = source.stream(5, torch.Generator().manual_seed(3))
    twin.load_state_dict(saved)
    twin.generator.set_state(generator_state)
    assert all(torch.equal(a, twin.next()[0]) for a in expected)


def test_without_augmentation_the_stream_is_unchanged(folder):
    samples, _ = open_samples(str(folder), transform=ImageTransform(3, (8, 8), MEAN, STD))
    plain = LoaderSource(samples, torch.arange(12), torch.device("cpu")).stream(4, torch.Generator().manual_seed(5))
    augmented = LoaderSource(samples, torch.arange(12), torch.device("cpu"), augment=TrainAugment(padding=0, flip=False))
    same = augmented.stream(4, torch.Generator().manual_seed(5))
    for _ in range(6):  # two passes: augmenting draws nothing from the order's generator
        (a, ya), (b, yb) = plain.next(), same.next()
        assert torch.equal(a, b) and torch.equal(ya, yb)


def test_the_official_tinyimagenet_folder_streams_with_its_test_split(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    (root).mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for label, wnid in enumerate(wnids):
        for i in range(3):
            write_rgb(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", seed=label * 10 + i)
    lines = []
    for i in range(8):  # 4 validation images per class: the last 2 of each are the test split
        wnid = wnids[i % 2]
        write_rgb(root / "val" / "images" / f"val_{i}.JPEG", seed=100 + i)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    transform = ImageTransform(3, (8, 8), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for spec in (tmp_path, root):  # the folder holding it, or the folder itself
        train, test = open_samples(str(spec), transform=transform)
        assert train.classes == wnids and len(train) == 6 and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
        assert train.ids[0] == "train/n01443537/images/n01443537_0.JPEG"
        assert sorted(test.ids) == ["val/images/val_4.JPEG", "val/images/val_5.JPEG", "val/images/val_6.JPEG",
                                    "val/images/val_7.JPEG"]  # fmt: skip
    source = LoaderSource(train, torch.arange(6), torch.device("cpu"), augment=TrainAugment(padding=4, resize=24))
    images, labels = source.stream(6, torch.Generator().manual_seed(0)).next()
    assert images.shape == (6, 3, 24, 24) and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_train_augments_image_files_in_the_loader(folder, tmp_path):
    from dualoptim.vision.fit import TrainRequest, train_images

    meta = train_images(TrainRequest(data=str(folder), image_size=8, width=4, epochs=1, batch_size=6, workers=0,
                                     device="cpu", augment=True), tmp_path / "model", progress_bar=False)  # fmt: skip
    assert meta["augment"] is True and (tmp_path / "model" / "model.pt").is_file()
