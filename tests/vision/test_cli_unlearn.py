"""`dualoptim unlearn` and `dualoptim train` for images through the CLI: success, exit 3, every bad input (exit 2)."""

import json

import pytest
import torch

from dualoptim.cli import main


@pytest.fixture(scope="module")
def ids(digits_model):
    return (digits_model / "train-ids.txt").read_text().split()


def _write(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def _unlearn(model, forget_args, out, *extra):
    return main(["unlearn", "--model", str(model), "--data", "digits", *forget_args, "--out", str(out),
                 "--epochs", "1", "--eval-examples", "200", "--bootstrap", "50", "--device", "cpu", "--no-progress", *extra])  # fmt: skip


def test_train_then_unlearn_as_written(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--subset", "300", "--epochs", "2", "--width", "4", "--out", str(tmp_path / "m"),
                 "--no-progress", "--device", "cpu"]) == 0  # fmt: skip
    assert "trained small-cnn on 300 examples" in capsys.readouterr().out
    ids = (tmp_path / "m" / "train-ids.txt").read_text().split()
    assert len(ids) == 300
    forget = _write(tmp_path / "forget.txt", ids[:30])
    assert main(["unlearn", "--model", str(tmp_path / "m" / "model.pt"), "--data", "digits", "--forget", forget,
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 0  # fmt: skip
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert audit["request"]["method"] == "NegGrad+" and audit["request"]["strategy"] == "dual"
    assert audit["request"]["environment"]["command"].startswith("dualoptim unlearn --model")
    out = capsys.readouterr().out
    assert "forget_loss_rise_vs_heldout = " in out and "mia_auc = " in out and f"outcome: {audit['outcome']}" in out


def test_require_gates_the_exit_status(digits_model, ids, tmp_path, capsys):
    forget = _write(tmp_path / "f.txt", ids[:40])
    assert _unlearn(digits_model / "model.pt", ["--forget", forget], tmp_path / "a", "--require", "retain_drop<=100,mia_auc<=1") == 0
    assert _unlearn(digits_model / "model.pt", ["--forget", forget], tmp_path / "b", "--require", "forget_score<=-1") == 3
    out = capsys.readouterr().out
    assert "FAILED       forget_score" in out and "a --require criterion did not pass" in out
    assert json.loads((tmp_path / "b" / "audit.json").read_text())["passed"] is False


def test_forget_class(digits_model, tmp_path):
    assert _unlearn(digits_model / "model.pt", ["--forget-class", "3"], tmp_path / "c") == 0
    audit = json.loads((tmp_path / "c" / "audit.json").read_text())
    from dualoptim.vision.datasets import load_dataset
    from dualoptim.vision.sources import subset_indices

    train_y = load_dataset("digits").train_y
    trained = train_y[subset_indices(len(train_y), 600)]
    counts = audit["request"]["counts"]
    assert counts["forget"] == int((trained == 3).sum()) and counts["retain"] == 600 - counts["forget"]
    assert counts["heldout"] == int((load_dataset("digits").test_y == 3).sum()) and "class '3'" in audit["request"]["forget"]["source"]
    # a class is forgotten when it is gone from its held-out examples too: no difference of differences
    headline = {v["criterion"] for v in audit["verdicts"] if v["role"] == "headline"}
    assert headline == {"forget_loss_rise", "forget_drop", "heldout_drop"}


def _bad(capsys, code, message):
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dualoptim unlearn: error:") and len(err.splitlines()) == 1, err
    assert message in err, err


def test_absent_duplicated_whole_and_empty_sets_are_one_line_errors(digits_model, ids, tmp_path, capsys):
    model = digits_model / "model.pt"
    _bad(capsys, _unlearn(model, ["--forget", _write(tmp_path / "a", [ids[0], "99999", "x7"])], tmp_path / "o"),
         "2 forget id(s) are not in the data digits (train split), the 600 examples the model was trained on: '99999', 'x7'")
    _bad(capsys, _unlearn(model, ["--forget", _write(tmp_path / "b", [ids[0], ids[1], ids[0]])], tmp_path / "o"),
         f"the forget list repeats 1 id(s): '{ids[0]}'")
    _bad(capsys, _unlearn(model, ["--forget", _write(tmp_path / "c", ids)], tmp_path / "o"),
         "the forget set is the whole data set (600 examples)")
    _bad(capsys, _unlearn(model, ["--forget", _write(tmp_path / "d", ids[:5]), "--retain", _write(tmp_path / "e", [])], tmp_path / "o"),
         "the retain set is empty")
    _bad(capsys, _unlearn(model, ["--forget-class", "cat"], tmp_path / "o"), "unknown class 'cat'")
    assert not (tmp_path / "o" / "audit.json").exists()


def test_pickled_models_are_refused_unless_trusted(digits_model, ids, tmp_path, capsys):
    from dualoptim.vision.formats import load_classifier

    whole = tmp_path / "whole.pt"
    torch.save(load_classifier(str(digits_model / "model.pt")).model, whole)
    forget = _write(tmp_path / "f", ids[:20])
    _bad(capsys, _unlearn(whole, ["--forget", forget], tmp_path / "o"), f"refusing to unpickle {whole}")
    assert _unlearn(whole, ["--forget", forget], tmp_path / "o", "--trust-pickle") == 0
    assert (tmp_path / "o" / "model.pt").is_file()


def test_labels_outside_the_head_name_both_sizes(digits_model, image_folder, tmp_path, capsys):
    data, _ = image_folder
    rows = ["path,label"] + [f"{data}/c0/{i:03d}.png,{label}" for i, label in enumerate([1, 2, 12, 0])]
    csv = _write(tmp_path / "data.csv", rows)
    forget = _write(tmp_path / "f", [f"{data}/c0/000.png"])
    code = main(["unlearn", "--model", str(image_folder[1]), "--data", csv, "--forget", forget, "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--no-progress"])  # fmt: skip
    _bad(capsys, code, f"label 12 of retain example '{data}/c0/002.png' is outside the model's head: the model has 3 outputs, "
                       "the data has 13 classes")  # fmt: skip


def test_an_undecodable_image_is_named(image_folder, tmp_path, capsys):
    import shutil

    data, model = image_folder
    copy = tmp_path / "images"
    shutil.copytree(data, copy)
    (copy / "c2" / "broken.png").write_bytes(b"not a png")
    forget = _write(tmp_path / "f", ["c0/000.png"])
    code = main(["unlearn", "--model", str(model), "--data", str(copy), "--forget", forget, "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--no-progress", "--workers", "1", "--epochs", "1"])  # fmt: skip
    _bad(capsys, code, f"cannot decode image {copy / 'c2' / 'broken.png'}: UnidentifiedImageError")
    assert (data / "c0" / "000.png").is_file() and not (data / "c2" / "broken.png").exists()


def test_out_may_not_overwrite_the_input_and_divergence_is_one_line(digits_model, ids, tmp_path, capsys):
    forget = _write(tmp_path / "f", ids[:20])
    _bad(capsys, _unlearn(digits_model / "model.pt", ["--forget", forget], digits_model), "would overwrite the input model")
    code = _unlearn(digits_model / "model.pt", ["--forget", forget], tmp_path / "o", "--method", "GA", "--forget-lr", "1e30",
                    "--strategy", "alternate", "--steps", "3")  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("dualoptim unlearn: error: unlearning diverged:") and len(err.splitlines()) == 1, err


def test_preset_files_layer_under_set_and_flags(digits_model, ids, tmp_path, capsys):
    forget = _write(tmp_path / "f.txt", ids[:20])
    team = tmp_path / "team.yaml"
    team.write_text("method: GA\nstrategy: alternate\nforget_lr: 0.0001\n")
    assert _unlearn(digits_model / "model.pt", ["--forget", forget], tmp_path / "p", "--preset", str(team),
                    "--set", "strategy=dual", "--forget-lr", "0.0002") == 0  # fmt: skip
    request = json.loads((tmp_path / "p" / "audit.json").read_text())["request"]
    assert request["method"] == "GA" and request["strategy"] == "dual"  # preset <- --set
    assert request["settings"]["forget_lr"] == 0.0002  # <- explicit flag
    bad = tmp_path / "bad.yaml"
    bad.write_text("metod: GA\n")
    assert _unlearn(digits_model / "model.pt", ["--forget", forget], tmp_path / "q", "--preset", str(bad)) == 2
    assert "dualoptim unlearn: error: unknown config key 'metod'; valid:" in capsys.readouterr().err
