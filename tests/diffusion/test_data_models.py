"""Data, classes and checkpoints: what loads, and the one-line errors of bad input."""

import gzip
import struct

import pytest
import torch

from dualoptim.diffusion.data import FASHION_MNIST_CLASSES, load_images, resolve_class
from dualoptim.diffusion.models import EMA, load_checkpoint, save_checkpoint
from tests.diffusion.conftest import tiny_unet


def test_classes_resolve_by_index_and_by_name_case_insensitively():
    assert resolve_class(7, FASHION_MNIST_CLASSES) == 7
    assert resolve_class("7", FASHION_MNIST_CLASSES) == 7
    assert resolve_class("sneaker", FASHION_MNIST_CLASSES) == 7


@pytest.mark.parametrize(("value", "message"), [
    (10, r"class 10 is out of range: the data set has classes 0..9"),
    (-1, r"class -1 is out of range"),
    ("unicorn", r"class name 'unicorn' is not in the data set; valid: T-shirt/top, Trouser"),
])  # fmt: skip
def test_bad_classes_are_errors_naming_them(value, message):
    with pytest.raises(ValueError, match=message):
        resolve_class(value, FASHION_MNIST_CLASSES)


def _idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + bytes(array.flatten().tolist()))


def test_fashion_mnist_loads_from_idx_files_into_minus_one_one_and_resizes(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    images[0] = 255
    _idx(folder / "train-images-idx3-ubyte.gz", images)
    _idx(folder / "train-labels-idx1-ubyte.gz", torch.tensor([0, 1, 2, 3, 4, 5], dtype=torch.uint8))
    data = load_images("fashion-mnist", tmp_path, image_size=16)
    assert data.images.shape == (6, 1, 16, 16) and data.num_classes == 10
    assert data.images.min() >= -1 and data.images.max() <= 1
    assert torch.allclose(data.images[0], torch.ones(1, 16, 16))  # white stays white after area resizing
    assert data.labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_a_missing_data_folder_names_it(tmp_path):
    with pytest.raises(ValueError, match=f"data folder {tmp_path}/fashion-mnist does not exist"):
        load_images("fashion-mnist", tmp_path)


def test_checkpoint_round_trip_and_class_count_mismatch(tmp_path):
    model = tiny_unet(num_classes=3)
    save_checkpoint(tmp_path / "m.pt", model, {"note": "x"})
    other = tiny_unet(num_classes=3, seed=1)
    assert load_checkpoint(tmp_path / "m.pt", other)["note"] == "x"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    with pytest.raises(ValueError, match=r"checkpoint .*m.pt has 3 classes, the data set has 5"):
        load_checkpoint(tmp_path / "m.pt", tiny_unet(num_classes=5))
    with pytest.raises(ValueError, match=r"checkpoint .*nothing.pt does not exist"):
        load_checkpoint(tmp_path / "nothing.pt", model)


def test_the_unet_has_a_class_embedding_row_for_the_null_label():
    model = tiny_unet(num_classes=3)
    assert model.null_label == 3 and model.unet.class_embedding.num_embeddings == 4
    x = torch.zeros(2, 1, 8, 8)
    assert model(x, torch.tensor([5, 5]), torch.tensor([0, 3])).shape == x.shape


def test_ema_moves_a_fraction_of_the_way():
    model = tiny_unet()
    ema = EMA(model, decay=0.75)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    first = next(ema.model.parameters())
    assert torch.allclose(first, next(model.parameters()) - 0.75)
