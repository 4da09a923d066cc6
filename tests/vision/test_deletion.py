"""`unlearn_images`, the Python API of `dualoptim unlearn` for images: end to end, resume, streaming, formats."""

import json

import pytest
import torch

from dualoptim.vision.deletion import ImageRequest, read_ids, unlearn_images
from dualoptim.vision.formats import load_classifier
from dualoptim.vision.sources import LoaderSource, open_samples


def _request(model, forget, **kw):
    base = dict(model=str(model), data="digits", forget=str(forget), epochs=2, eval_examples=300, bootstrap=100,
                device="cpu", forget_lr=3e-3)  # fmt: skip
    return ImageRequest(**{**base, **kw})


@pytest.fixture(scope="module")
def forget_file(digits_model, tmp_path_factory):
    ids = read_ids(digits_model / "train-ids.txt")
    path = tmp_path_factory.mktemp("forget") / "forget.txt"
    path.write_text("\n".join(ids[::10]) + "\n")  # 60 of the 600 trained examples
    return path


def test_unlearn_images_end_to_end(digits_model, forget_file, tmp_path):
    model_path = digits_model / "model.pt"
    original = model_path.read_bytes()
    audit = unlearn_images(_request(model_path, forget_file, method="GA", epochs=3), tmp_path, progress_bar=False)
    assert model_path.read_bytes() == original  # the input is never modified
    request = audit["request"]
    assert request["counts"]["forget"] == 60 and request["counts"]["retain"] == 540  # only the 600 trained examples
    assert request["counts"]["heldout"] == 360 and request["model"]["format"] == "dualoptim-pt"
    assert request["model"]["input_sha256"] != request["model"]["output_sha256"]
    forget = audit["performance"]["forget"]
    assert forget["after"]["accuracy"] < forget["before"]["accuracy"]  # gradient ascent forgot something
    assert set(audit["evidence"]["after"]["mia"]) == {"loss", "entropy"}
    assert {p.name for p in tmp_path.iterdir()} == {"model.pt", "audit.json", "audit.md", "loss-distributions.png", "performance.png"}
    # the saved model is the unlearned one, readable in the input's format
    reloaded = load_classifier(str(tmp_path / "model.pt"))
    assert reloaded.meta == load_classifier(str(model_path)).meta
    assert json.loads((tmp_path / "audit.json").read_text())["request"]["model"]["output_sha256"] == request["model"]["output_sha256"]


def test_an_interrupted_request_resumes_to_the_same_model(digits_model, forget_file, tmp_path, monkeypatch):
    from dualoptim.vision import deletion

    request = _request(digits_model / "model.pt", forget_file, method="SalUn", epochs=4, checkpoint_every=3,
                       method_options={"mask_examples": 32})  # fmt: skip
    unlearn_images(request, tmp_path / "whole", progress_bar=False)

    save = deletion._ResumeFile.save
    calls = []

    def interrupt(self, state):
        save(self, state)
        calls.append(state["step"])
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(deletion._ResumeFile, "save", interrupt)
    with pytest.raises(KeyboardInterrupt):
        unlearn_images(request, tmp_path / "cut", progress_bar=False)
    assert (tmp_path / "cut" / ".resume.pt").is_file() and not (tmp_path / "cut" / "audit.json").exists()
    monkeypatch.setattr(deletion._ResumeFile, "save", save)
    monkeypatch.setattr(deletion._ResumeFile, "load", lambda self, _load=deletion._ResumeFile.load: calls.append("resumed") or _load(self))
    audit = unlearn_images(request, tmp_path / "cut", progress_bar=False)
    assert calls == [3, 6, "resumed"] and not (tmp_path / "cut" / ".resume.pt").exists()
    whole = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["state_dict"]
    cut = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert audit["request"]["steps"] == json.loads((tmp_path / "whole" / "audit.json").read_text())["request"]["steps"]


def test_an_image_folder_streams_from_files_and_keeps_the_safetensors_format(image_folder, tmp_path):
    data, model_path = image_folder
    forget = tmp_path / "forget.txt"
    forget.write_text("c1/000.png\nc1/001.png\nc2/005.png\n")
    audit = unlearn_images(ImageRequest(model=str(model_path), data=str(data), forget=str(forget), epochs=2,
                                        workers=0, device="cpu", bootstrap=50), tmp_path / "out", progress_bar=False)  # fmt: skip
    assert audit["request"]["counts"] == {"forget": 3, "retain": 87, "heldout": 0, "scored": {"forget": 3, "retain": 87}}
    assert audit["evidence"] == {} and (tmp_path / "out" / "model.safetensors").is_file()
    assert load_classifier(str(tmp_path / "out" / "model.safetensors")).classes == ["c0", "c1", "c2"]


def test_the_folder_source_holds_paths_not_images_and_reads_through_workers(image_folder):
    data, model_path = image_folder
    loaded = load_classifier(str(model_path))
    samples, _ = open_samples(str(data), transform=loaded.transform, classes=loaded.classes)
    assert not hasattr(samples.dataset, "images") and len(samples.dataset.paths) == 90
    source = LoaderSource(samples, torch.arange(90), torch.device("cpu"), workers=1, eval_batch_size=32)
    stream = source.stream(16, torch.Generator().manual_seed(0))
    batches = [stream.next() for _ in range(7)]  # more than one pass of 90 examples
    assert [len(y) for _, y in batches] == [16, 16, 16, 16, 16, 10, 16]
    assert batches[0][0].shape == (16, 1, 8, 8)
    assert sorted(torch.cat([y for _, y in batches[:6]]).tolist()) == sorted(samples.labels.tolist())


def test_a_hugging_face_image_classifier_folder_is_unlearned_and_saved_with_save_pretrained(digits_model, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_labels=10,
                                    id2label={i: str(i) for i in range(10)}, label2id={str(i): i for i in range(10)})  # fmt: skip
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    forget = tmp_path / "forget.txt"
    forget.write_text("0\n5\n9\n")
    audit = unlearn_images(ImageRequest(model=str(tmp_path / "vit"), data="digits", forget=str(forget), method="GA",
                                        steps=3, device="cpu", bootstrap=20, eval_examples=100), tmp_path / "out",
                           progress_bar=False)  # fmt: skip
    assert audit["request"]["model"]["format"] == "huggingface" and audit["request"]["steps"] == 3
    saved = transformers.ViTForImageClassification.from_pretrained(tmp_path / "out" / "model")
    before = transformers.ViTForImageClassification.from_pretrained(tmp_path / "vit")
    changed = [not torch.equal(a, b) for a, b in zip(saved.state_dict().values(), before.state_dict().values())]
    assert any(changed) and saved.config.num_labels == 10
