import pytest
import torch

from dualoptim.vision.models import build_model
from dualoptim.vision.training import load_checkpoint, save_checkpoint


@pytest.mark.parametrize(("arch", "shape", "width"), [("small-cnn", (1, 8, 8), 8), ("small-cnn", (1, 28, 28), 8), ("resnet18", (3, 32, 32), 4)])
def test_models_fit_their_images(arch, shape, width):
    model = build_model(arch, shape, 10, width)
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_unknown_model():
    with pytest.raises(ValueError, match=r"unknown model 'vgg'; valid: small-cnn, resnet18"):
        build_model("vgg", (1, 8, 8), 10, 8)


def test_checkpoints_round_trip_and_bad_ones_are_named(tmp_path):
    model = build_model("small-cnn", (1, 8, 8), 10, 8)
    save_checkpoint(tmp_path / "ok.pt", model, {"seconds": 1.5})
    other = build_model("small-cnn", (1, 8, 8), 10, 8)
    assert load_checkpoint(tmp_path / "ok.pt", other) == {"seconds": 1.5}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match=r"corrupt checkpoint .*junk.pt"):
        load_checkpoint(tmp_path / "junk.pt", other)
    with pytest.raises(ValueError, match=r"checkpoint .*ok.pt does not match the model SmallCNN"):
        load_checkpoint(tmp_path / "ok.pt", build_model("small-cnn", (1, 8, 8), 10, 16))
    with pytest.raises(ValueError, match=r"checkpoint does not exist: .*nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt", other)
