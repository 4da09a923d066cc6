import pytest
import torch

from dualoptim.vision.splits import make_split, read_indices

LABELS = torch.arange(100) % 10


def test_random_fraction_is_seeded_and_partitions():
    a = make_split(LABELS, "random", fraction=0.1, seed=3)
    b = make_split(LABELS, "random", fraction=0.1, seed=3)
    c = make_split(LABELS, "random", fraction=0.1, seed=4)
    assert len(a.forget) == 10 and len(a.retain) == 90
    assert torch.equal(a.forget, b.forget) and not torch.equal(a.forget, c.forget)
    assert sorted(torch.cat([a.forget, a.retain]).tolist()) == list(range(100))


def test_count_class_and_indices():
    assert len(make_split(LABELS, "random", count=7).forget) == 7
    split = make_split(LABELS, "class", forget_class=3)
    assert split.forget.tolist() == list(range(3, 100, 10))
    assert (LABELS[split.retain] != 3).all()
    assert make_split(LABELS, "indices", indices=[5, 2, 9]).forget.tolist() == [2, 5, 9]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "random", "fraction": 1.5}, r"forget fraction must be in \(0, 1\), got 1.5"),
        ({"kind": "random", "fraction": 0.0}, r"forget fraction must be in \(0, 1\), got 0.0"),
        ({"kind": "random", "count": 0}, r"forget count must be in \[1, 99\].*got 0"),
        ({"kind": "indices", "indices": [1, 100]}, r"forget indices out of range \[0, 100\): \[100\]"),
        ({"kind": "indices", "indices": [-1]}, r"out of range \[0, 100\): \[-1\]"),
        ({"kind": "indices", "indices": [4, 4, 5]}, r"duplicated forget indices: \[4\]"),
        ({"kind": "indices", "indices": []}, r"empty forget set"),
        ({"kind": "class", "forget_class": 42}, r"empty forget set: class 42 has no training examples"),
        ({"kind": "indices", "indices": list(range(100))}, r"empty retain set: the forget set holds all 100"),
        ({"kind": "sideways"}, r"unknown forget set kind 'sideways'; valid: random, class, indices"),
    ],
)
def test_bad_splits_name_the_value(kwargs, message):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=message):
        make_split(LABELS, kind, **kwargs)


def test_read_indices(tmp_path):
    (tmp_path / "a.json").write_text("[3, 1, 2]")
    (tmp_path / "b.txt").write_text("3 1\n2,7")
    (tmp_path / "c.txt").write_text("3 x")
    assert read_indices(tmp_path / "a.json") == [3, 1, 2]
    assert read_indices(tmp_path / "b.txt") == [3, 1, 2, 7]
    with pytest.raises(ValueError, match=r"c.txt is not a list of integers"):
        read_indices(tmp_path / "c.txt")
    with pytest.raises(ValueError, match=r"forget indices file does not exist: .*missing.txt"):
        read_indices(tmp_path / "missing.txt")
