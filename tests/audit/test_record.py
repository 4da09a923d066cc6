"""The audit built from before/after scores: criteria, verdicts, exit status, files written."""

import json

import numpy as np
import pytest

from dualoptim.audit import (
    SetScores,
    build_audit,
    exit_status,
    parse_requirements,
    sha256_ids,
    sha256_path,
    write_audit,
)


def _scores(accuracy, forget_shift, rng):
    def one(shift, acc, n):
        loss = np.abs(rng.normal(1.0 - shift, 0.3, n))
        return SetScores({"accuracy": acc}, loss, {"loss": -loss})

    return {"forget": one(forget_shift, accuracy[0], 200), "retain": one(0.5, accuracy[1], 300),
            "heldout": one(0.0, accuracy[2], 400)}  # fmt: skip


def _request():
    env = {"command": "dualoptim unlearn ...", "commit": None, "versions": {"torch": "x"}, "cpu": "cpu", "gpu": None}
    return {"task": "t", "model": {"source": "m", "format": "f", "input_sha256": "a", "output_sha256": "b"}, "data": "d",
            "forget": {"source": "s", "ids_sha256": "c"}, "counts": {"forget": 200, "retain": 300, "heldout": 400},
            "method": "GA", "strategy": "dual", "steps": 3, "settings": {"lr": 1}, "seconds": 1.0,
            "unlearn_seconds": 0.5, "environment": env}  # fmt: skip


def test_audit_values_verdicts_and_exit_status(tmp_path):
    rng = np.random.default_rng(0)
    before = _scores((99.0, 98.0, 90.0), 0.6, rng)  # forget set memorised: low loss
    after = _scores((90.0, 97.0, 89.5), 0.0, rng)  # forget set looks like held-out data
    audit = build_audit(request=_request(), before=before, after=after, primary="accuracy",
                        requirements=parse_requirements("retain_drop<=0.5"), bootstrap=200)  # fmt: skip
    values = {k: v["value"] for k, v in audit["criteria"].items()}
    assert values["retain_drop"] == pytest.approx(1.0) and values["forget_drop"] == pytest.approx(9.0)
    assert audit["evidence"]["before"]["mia"]["loss"]["auc"] > 0.9 and abs(values["mia_auc"] - 0.5) < 0.1
    assert audit["evidence"]["before"]["ks_loss"]["p_value"] < 1e-10
    assert audit["passed"] is False and exit_status(audit) == 3  # 1.0 > 0.5
    written = write_audit(audit, tmp_path, {w: {n: s.loss for n, s in sc.items()} for w, sc in (("before", before), ("after", after))})
    assert {p.name for p in written} == {"audit.json", "audit.md", "loss-distributions.png", "performance.png"}
    assert json.loads((tmp_path / "audit.json").read_text())["passed"] is False
    text = (tmp_path / "audit.md").read_text()
    assert "FAIL   retain_drop = 1, wanted <= 0.5 [required]" in text and "![performance](performance.png)" in text


def test_audit_without_heldout_reports_the_evidence_absent():
    rng = np.random.default_rng(1)
    before, after = _scores((99, 98, 90), 0.6, rng), _scores((90, 97, 89), 0.0, rng)
    del before["heldout"], after["heldout"]
    audit = build_audit(request=_request(), before=before, after=after, primary="accuracy", bootstrap=10)
    assert audit["evidence"] == {} and audit["criteria"]["mia_auc"]["value"] is None and audit["passed"] is None
    assert exit_status(audit) == 0
    mia = next(v for v in audit["verdicts"] if v["criterion"] == "mia_auc")
    assert mia["passed"] is None and mia["reason"] == "no held-out set was given"


def test_hashes(tmp_path):
    assert sha256_ids(["b", "a"]) == sha256_ids(["a", "b"]) != sha256_ids(["a"])
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x.bin").write_bytes(b"1")
    first = sha256_path(tmp_path / "f")
    (tmp_path / "f" / "x.bin").write_bytes(b"2")
    assert sha256_path(tmp_path / "f") != first
    assert sha256_path(tmp_path / "f" / "x.bin") == "d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35"
