"""`dualoptim audit` of image classifiers: the negative control (an unchanged model never passes),
the positive control (a model retrained without the forget set passes) and the template control
(a retain-only fine-tune does not pass), through the CLI and the Python API."""

import json
import sys
import types

import pytest
import torch

from dualoptim.audit import sha256_path
from dualoptim.cli import main
from dualoptim.vision.deletion import ImageRequest, audit_images, read_ids, unlearn_images


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
    """A CNN trained on 300 digits, the same recipe retrained without 150 of them, and a retain-only fine-tune."""
    from dualoptim.vision.fit import TrainRequest, train_images

    root = tmp_path_factory.mktemp("controls")
    train_images(TrainRequest(data="digits", subset=300, width=8, epochs=30, device="cpu"), root / "orig", progress_bar=False)
    ids = read_ids(root / "orig" / "train-ids.txt")
    forget = root / "forget.txt"
    forget.write_text("\n".join(ids[::2]) + "\n")
    meta = train_images(TrainRequest(data="digits", subset=300, width=8, epochs=30, device="cpu", exclude=str(forget)),
                        root / "retrained", progress_bar=False)  # fmt: skip
    assert meta["excluded"] == 150 and meta["examples"] == 150
    assert set(read_ids(root / "retrained" / "train-ids.txt")).isdisjoint(read_ids(forget))
    unlearn_images(ImageRequest(model=str(root / "orig" / "model.pt"), data="digits", forget=str(forget), method="FT",
                                epochs=3, device="cpu", bootstrap=100), root / "finetuned", progress_bar=False, log=_quiet)  # fmt: skip
    return root, forget


def _request(model, forget, **kw):
    return ImageRequest(model=str(model), data="digits", forget=str(forget), device="cpu", bootstrap=300, **kw)


def test_the_audit_of_an_unchanged_model_never_passes_through_the_cli(controls, tmp_path, capsys):
    root, forget = controls
    model = root / "orig" / "model.pt"
    before = sha256_path(model)
    argv = ["audit", "--model", str(model), "--original", str(model), "--data", "digits", "--forget", str(forget),
            "--bootstrap", "200", "--device", "cpu", "--out", str(tmp_path / "a")]  # fmt: skip
    assert main(argv) == 0
    assert sha256_path(model) == before
    audit = json.loads((tmp_path / "a" / "audit.json").read_text())
    verdicts = {v["criterion"]: v["outcome"] for v in audit["verdicts"]}
    assert audit["outcome"] == "FAILED" and verdicts["forget_loss_rise_vs_heldout"] == "FAILED"
    out = capsys.readouterr().out
    assert "outcome: FAILED" in out
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"audit.json", "audit.md", "loss-distributions.png", "performance.png"}
    # one model alone: the forget set is known better than the held-out set
    assert main(argv[:3] + argv[5:] + ["--require", "mia_auc<=0.6"]) == 3
    assert "a --require criterion did not pass" in capsys.readouterr().out


def test_a_model_retrained_without_the_forget_set_passes(controls, tmp_path):
    root, forget = controls
    audit = audit_images(_request(root / "retrained" / "model.pt", forget), tmp_path / "a",
                         original=str(root / "orig" / "model.pt"), log=_quiet)  # fmt: skip
    assert audit["outcome"] == "PASSED", audit["verdicts"]
    assert audit["effects"]["forget_loss_rise_vs_heldout"]["ci_low"] > 0
    alone = audit_images(_request(root / "retrained" / "model.pt", forget), tmp_path / "b", log=_quiet)
    verdicts = {v["criterion"]: v["outcome"] for v in alone["verdicts"]}
    # one model, 150 forget examples: the attack cannot tell them from held-out data; the accuracy gap's
    # interval (about +-6.5 points) is too wide to show <= 5
    assert alone["kind"] == "one model as it is" and verdicts["mia_auc"] == "PASSED" and verdicts["forget_gap"] != "FAILED"
    text = (tmp_path / "b" / "audit.md").read_text()
    assert "# Deletion audit of one model as it is" in text and "cannot tell forgotten records from records" in text


def test_a_retain_only_fine_tune_does_not_pass(controls, tmp_path):
    root, forget = controls
    audit = audit_images(_request(root / "finetuned" / "model.pt", forget), tmp_path / "a",
                         original=str(root / "orig" / "model.pt"), log=_quiet)  # fmt: skip
    assert audit["outcome"] != "PASSED", audit["verdicts"]


def test_bad_audit_requests_are_one_line_errors_and_write_nothing(controls, tmp_path, capsys):
    root, forget = controls
    model = root / "orig" / "model.pt"
    assert main(["audit", "--model", str(model), "--data", "digits", "--forget", str(forget), "--out", str(root / "orig")]) == 2
    assert "would write into the audited model's folder" in capsys.readouterr().err
    assert main(["audit", "--model", str(model), "--data", "digits", "--forget", str(forget), "--max-new-tokens", "3",
                 "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err == "dualoptim audit: error: --max-new-tokens is for causal LMs, not an image classifier"
    assert not (tmp_path / "x").exists()


def test_train_exclude_names_unknown_ids(tmp_path):
    from dualoptim.vision.fit import TrainRequest, train_images

    (tmp_path / "bad.txt").write_text("nope\n")
    with pytest.raises(ValueError, match="1 id\\(s\\) of --exclude .* are not in the data: 'nope'"):
        train_images(TrainRequest(data="digits", subset=50, epochs=1, device="cpu", exclude=str(tmp_path / "bad.txt")),
                     tmp_path / "m", progress_bar=False)  # fmt: skip


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_a_library_model_is_saved_with_the_unlearned_weights(tmp_path, monkeypatch, library):
    """The saved file holds the model's weights after unlearning, not the input file's."""
    from safetensors.torch import load_file, save_file

    from dualoptim.vision.formats import load_classifier
    from dualoptim.vision.models import SmallCNN

    fake = types.ModuleType(library)
    build = lambda *a, num_classes, **k: SmallCNN((3, 32, 32), num_classes, 4)  # noqa: E731
    fake.models = types.SimpleNamespace(get_model=build)
    fake.create_model = build
    monkeypatch.setitem(sys.modules, library, fake)
    torch.manual_seed(0)
    state = SmallCNN((3, 32, 32), 5, 4).state_dict()
    save_file(state, tmp_path / "w.safetensors")
    loaded = load_classifier(f"{library}:arch", weights=str(tmp_path / "w.safetensors"), image_size=32)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(1.0)  # what unlearning does: the weights move
    written = loaded.save(tmp_path / "out")
    saved = load_file(written)
    moved = loaded.model.state_dict()
    assert all(torch.equal(saved[k], moved[k]) for k in saved)
    assert not all(torch.equal(saved[k], state[k]) for k in saved if saved[k].is_floating_point())


def test_a_train_output_folder_is_accepted_as_the_model(controls, tmp_path):
    from dualoptim.vision.formats import load_classifier

    root, forget = controls
    loaded = load_classifier(str(root / "orig"))
    assert loaded.format == "dualoptim-pt" and loaded.weights_path == root / "orig" / "model.pt"
    audit = audit_images(_request(root / "orig", forget), tmp_path / "a", log=_quiet)
    assert audit["request"]["model"]["input_sha256"] == sha256_path(root / "orig" / "model.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds neither a Hugging Face model .* nor a dualoptim checkpoint"):
        load_classifier(str(tmp_path / "empty"))


def test_the_robustness_probes_of_an_image_audit(controls, tmp_path, capsys):
    root, forget = controls
    argv = ["audit", "--model", str(root / "finetuned" / "model.pt"), "--original", str(root / "orig" / "model.pt"),
            "--data", "digits", "--forget", str(forget), "--bootstrap", "50", "--device", "cpu", "--probe", "relearn",
            "--probe", "int8", "--relearn-steps", "3", "--out", str(tmp_path / "a")]  # fmt: skip
    assert main(argv) == 0
    probes = json.loads((tmp_path / "a" / "audit.json").read_text())["probes"]
    assert set(probes) == {"relearn on the retain set", "relearn on a few forget examples", "int8 quantisation"}
    assert probes["relearn on a few forget examples"]["forget_gain"]["sizes"] == [142]  # 150 less the 8 it trained on
    assert "### relearn on the retain set" in (tmp_path / "a" / "audit.md").read_text()
    assert main([*argv[:-2], "--probe", "4bit", "--out", str(tmp_path / "b")]) == 2
    assert "the 4bit probe" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_a_resumed_image_request_does_not_score_before_again(controls, tmp_path, monkeypatch):
    import dualoptim.vision.deletion as deletion

    root, forget = controls
    request = _request(root / "orig" / "model.pt", forget, method="FT", epochs=1, checkpoint_every=2)
    scored = []
    score_sets = deletion.score_sets
    monkeypatch.setattr(deletion, "score_sets", lambda *a, **k: scored.append(1) or score_sets(*a, **k))

    def interrupt(self, state):
        raise KeyboardInterrupt

    save = deletion._ResumeFile.save
    monkeypatch.setattr(deletion._ResumeFile, "save", lambda self, state: (save(self, state), interrupt(self, state)))
    with pytest.raises(KeyboardInterrupt):
        unlearn_images(request, tmp_path / "cut", progress_bar=False, log=_quiet)
    assert len(scored) == 1 and len(list((tmp_path / "cut").glob(".before-*.json"))) == 1
    monkeypatch.setattr(deletion._ResumeFile, "save", save)
    audit = unlearn_images(request, tmp_path / "cut", progress_bar=False, log=_quiet)
    assert len(scored) == 2  # the resumed call scored "after" only
    assert audit["request"]["settings"]["before_cached"] is True and not list((tmp_path / "cut").glob(".before-*"))
    whole = unlearn_images(request, tmp_path / "whole", progress_bar=False, log=_quiet)
    assert whole["request"]["settings"]["before_cached"] is False
    assert audit["performance"]["forget"]["before"] == whole["performance"]["forget"]["before"]
    assert audit["evidence"]["before"] == whole["evidence"]["before"]
