"""Data a user brings (IDX folder, CSV, image folder) and model formats (torchvision reference + weights file)."""

import gzip
import json
import struct
import sys
import types

import pytest
import torch

from dualoptim.vision.formats import load_classifier
from dualoptim.vision.models import SmallCNN
from dualoptim.vision.sources import ImageTransform, open_samples, subset_indices


def _idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + bytes(array.flatten().tolist()))


def test_an_idx_folder_is_read_with_its_test_split_as_held_out(tmp_path):
    generator = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("t10k", 5)):
        _idx(tmp_path / f"{split}-images-idx3-ubyte.gz", torch.randint(0, 256, (n, 6, 6), generator=generator, dtype=torch.uint8))
        _idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", torch.arange(n, dtype=torch.uint8) % 3)
    train, test = open_samples(str(tmp_path))
    assert len(train) == 12 and len(test) == 5 and train.ids[:3] == ["0", "1", "2"]
    image, label = train.dataset[4]
    assert image.shape == (1, 6, 6) and int(label) == 1


def test_a_csv_maps_names_to_the_models_classes_and_names_bad_lines(tmp_path):
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("L", (4, 4), 128).save(tmp_path / name)
    transform = ImageTransform(1, (4, 4), (0.5,), (0.25,))
    (tmp_path / "data.csv").write_text("path,label\na.png,dog\nb.png,cat\n")
    samples, heldout = open_samples(str(tmp_path / "data.csv"), transform=transform, classes=["cat", "dog"])
    assert heldout is None and samples.ids == ["a.png", "b.png"] and samples.labels.tolist() == [1, 0]
    image, _ = samples.dataset[0]
    assert torch.allclose(image, torch.full((1, 4, 4), (128 / 255 - 0.5) / 0.25), atol=1e-6)
    (tmp_path / "bad.csv").write_text("a.png,dog\nb.png\n")
    with pytest.raises(ValueError, match=r"bad.csv line 2: expected 'path,label', got 'b.png'"):
        open_samples(str(tmp_path / "bad.csv"), transform=transform)
    with pytest.raises(ValueError, match="class 'dog' of .* is not a class of the model"):
        open_samples(str(tmp_path / "data.csv"), transform=transform, classes=["cat", "bird"])


def test_subset_indices_are_fixed_and_sorted():
    first = subset_indices(100, 10)
    assert torch.equal(first, subset_indices(100, 10)) and torch.equal(first, first.sort().values)
    with pytest.raises(ValueError, match=r"subset must be in \[1, 100\], got 101"):
        subset_indices(100, 101)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_torchvision_reference_with_a_weights_file_round_trips_in_its_format(tmp_path, monkeypatch, suffix):
    # torchvision does not import beside this CPU torch build: a stand-in module with its API
    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(get_model=lambda arch, weights, num_classes: SmallCNN((3, 32, 32), num_classes, 4))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    torch.manual_seed(0)
    state = SmallCNN((3, 32, 32), 7, 4).state_dict()
    weights = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, weights)
    else:
        torch.save(state, weights)
    loaded = load_classifier("torchvision:resnet18", weights=str(weights), image_size=32)
    assert loaded.num_classes == 7 and loaded.format == f"state-dict-{suffix[1:]}"
    assert loaded.transform.size == (32, 32) and all(torch.equal(state[k], v) for k, v in loaded.model.state_dict().items())
    written = loaded.save(tmp_path / "out")
    assert written.name == weights.name
    assert json.loads((tmp_path / "out" / "model.json").read_text()) == {"model": "torchvision:resnet18", "weights": weights.name}
    again = load_classifier("torchvision:resnet18", weights=str(written))
    assert all(torch.equal(state[k], v) for k, v in again.model.state_dict().items())
    with pytest.raises(ValueError, match="needs --weights FILE"):
        load_classifier("torchvision:resnet18")
    with pytest.raises(ValueError, match="is a bare state dict: say its architecture"):
        load_classifier(str(weights))
