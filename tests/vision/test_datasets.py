import gzip
import struct

import pytest
import torch

from dualoptim.idx import read_idx
from dualoptim.paths import default_data_root
from dualoptim.vision.datasets import load_dataset


def test_digits_is_embedded_and_normalised():
    data = load_dataset("digits")
    assert data.train_x.shape == (1437, 1, 8, 8) and data.test_x.shape == (360, 1, 8, 8)
    assert data.num_classes == 10 and set(data.train_y.tolist()) == set(range(10))
    assert abs(data.train_x.mean().item()) < 1e-5 and abs(data.train_x.std().item() - 1) < 1e-3


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist-3d'; valid: digits, fashion-mnist"):
        load_dataset("mnist-3d")


def test_missing_data_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path}/fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)


def _write_idx(path, array_bytes: bytes, header: bytes) -> None:
    with gzip.open(path, "wb") as handle:
        handle.write(header + array_bytes)


def test_idx_reader_rejects_corrupt_files(tmp_path):
    good = tmp_path / "good.gz"
    _write_idx(good, bytes(range(6)), struct.pack(">HBBII", 0, 8, 2, 2, 3))
    assert read_idx(good).tolist() == [[0, 1, 2], [3, 4, 5]]
    truncated = tmp_path / "truncated.gz"
    _write_idx(truncated, bytes(range(5)), struct.pack(">HBBII", 0, 8, 2, 2, 3))
    with pytest.raises(ValueError, match=r"truncated.gz is truncated or corrupt: 17 bytes, header says 18"):
        read_idx(truncated)
    wrong = tmp_path / "wrong.gz"
    _write_idx(wrong, b"", b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match=r"wrong.gz is not an IDX file of unsigned bytes"):
        read_idx(wrong)
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"cannot read IDX file .*garbage.gz"):
        read_idx(garbage)


@pytest.mark.skipif(not (default_data_root() / "fashion-mnist").is_dir(), reason="Fashion-MNIST IDX files not present")
def test_fashion_mnist_from_idx_files():
    data = load_dataset("fashion-mnist")
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [6000] * 10
