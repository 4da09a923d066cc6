"""The audit built from before/after scores: the forget set against the held-out control,
PASSED / FAILED / INCONCLUSIVE verdicts, exit status, files written."""

import json

import numpy as np

from dualoptim.audit import (
    SetScores,
    build_audit,
    exit_status,
    membership_auc,
    parse_requirements,
    sha256_ids,
    sha256_path,
    write_audit,
)


def _set(loss, correct):
    loss, correct = np.asarray(loss, float), 100.0 * np.asarray(correct, float)
    return SetScores({"accuracy": float(correct.mean())}, loss, {"loss": -loss}, {"accuracy": correct})


def _draw(rng, n, mean_loss, accuracy):
    loss = np.abs(rng.normal(mean_loss, 0.3, n))
    return loss, rng.random(n) < accuracy


def _request():
    env = {"command": "dualoptim unlearn ...", "commit": None, "versions": {"torch": "x"}, "cpu": "cpu", "gpu": None}
    return {"task": "t", "model": {"source": "m", "format": "f", "input_sha256": "a", "output_sha256": "b"}, "data": "d",
            "forget": {"source": "s", "ids_sha256": "c"}, "counts": {"forget": 200, "retain": 300, "heldout": 400},
            "method": "GA", "strategy": "dual", "steps": 3, "settings": {"lr": 1}, "seconds": 1.0,
            "unlearn_seconds": 0.5, "environment": env}  # fmt: skip


def _pair(rng, sizes=(200, 300, 400), forget=((0.2, 0.99), (1.0, 0.9)), retain=((0.3, 0.98), (0.3, 0.97)),
          heldout=((1.0, 0.9), (1.0, 0.9))):  # fmt: skip
    """(before, after): each set's (mean loss, accuracy) before and after, drawn per example."""
    before, after = {}, {}
    for name, n, (b, a) in zip(("forget", "retain", "heldout"), sizes, (forget, retain, heldout)):
        before[name] = _set(*_draw(rng, n, *b))
        after[name] = _set(*_draw(rng, n, *a))
    return before, after


def _verdicts(audit):
    return {v["criterion"]: v for v in audit["verdicts"]}


def test_real_forgetting_passes_against_the_heldout_control(tmp_path):
    before, after = _pair(np.random.default_rng(0))
    audit = build_audit(request=_request(), before=before, after=after, primary="accuracy",
                        requirements=parse_requirements("retain_drop<=0.5"), bootstrap=200)  # fmt: skip
    verdicts = _verdicts(audit)
    loss = audit["effects"]["forget_loss_rise_vs_heldout"]
    assert 0.6 < loss["estimate"] < 1.0 and loss["ci_low"] > 0 and loss["p_greater"] < 1e-6
    assert verdicts["forget_loss_rise_vs_heldout"]["outcome"] == "PASSED"
    assert verdicts["forget_drop_vs_heldout"]["outcome"] == "PASSED"
    assert verdicts["mia_auc"]["outcome"] == "PASSED" and audit["evidence"]["before"]["mia"]["loss"]["auc"] > 0.9
    # the interval the audit reports is the 95% one, recomputed here from the same scores
    mia = audit["evidence"]["after"]["mia"]["loss"]
    again = membership_auc(after["forget"].attacks["loss"], after["heldout"].attacks["loss"], bootstrap=200, level=0.95)
    assert mia["level"] == 0.95 and (mia["ci_low"], mia["ci_high"]) == (again.low, again.high)
    assert verdicts["mia_auc"]["interval"] == [again.low, again.high]
    # the retain drop of about 1 point with a +-3 point interval cannot show <= 0.5: never passed
    assert verdicts["retain_drop"]["outcome"] == "INCONCLUSIVE" and "straddles 0.5" in verdicts["retain_drop"]["reason"]
    assert audit["passed"] is False and exit_status(audit) == 3
    assert audit["outcome"] == "INCONCLUSIVE"  # every headline criterion passed; the required one could not decide
    written = write_audit(audit, tmp_path, {w: {n: s.loss for n, s in sc.items()} for w, sc in (("before", before), ("after", after))})
    assert {p.name for p in written} == {"audit.json", "audit.md", "loss-distributions.png", "performance.png"}
    assert json.loads((tmp_path / "audit.json").read_text())["outcome"] == "INCONCLUSIVE"
    text = (tmp_path / "audit.md").read_text()
    assert "**Outcome: INCONCLUSIVE** (inconclusive: retain_drop; a --require criterion did not pass)" in text and "INCONCLUSIVE retain_drop" in text and "[required]" in text
    assert "never trained on" not in text and "data not in the forget or retain sets" in text
    assert "![performance](performance.png)" in text


def test_a_deletion_that_did_not_happen_never_passes():
    """The negative control: the model after is the model before."""
    before, _ = _pair(np.random.default_rng(1))
    audit = build_audit(request=_request(), before=before, after=before, primary="accuracy", bootstrap=100)
    verdicts = _verdicts(audit)
    assert audit["effects"]["forget_loss_rise_vs_heldout"]["estimate"] == 0.0
    assert verdicts["forget_loss_rise_vs_heldout"]["outcome"] == "FAILED"
    assert verdicts["forget_drop_vs_heldout"]["outcome"] == "FAILED"
    assert verdicts["mia_auc"]["outcome"] == "FAILED"  # the forget set is still far apart from held-out
    assert audit["outcome"] == "FAILED"


def test_a_template_learned_by_both_sets_does_not_pass():
    """Held-out loss falls more than forget loss (the retain steps taught the answer template): the
    two sets look alike after, yet nothing specific to the forget set was removed."""
    before, after = _pair(np.random.default_rng(2), forget=((0.6, 0.7), (0.5, 0.75)), heldout=((1.4, 0.3), (0.5, 0.75)))
    audit = build_audit(request=_request(), before=before, after=after, primary="accuracy", bootstrap=200)
    verdicts = _verdicts(audit)
    assert audit["evidence"]["after"]["mia"]["loss"]["ci_high"] < 0.6  # the attack alone would have passed it
    assert verdicts["forget_loss_rise"]["outcome"] == "FAILED" and verdicts["forget_drop"]["outcome"] != "PASSED"
    # relative to the control the forget set "rose", but only because the control fell further: not a pass
    assert audit["effects"]["forget_loss_rise_vs_heldout"]["ci_low"] > 0
    did = verdicts["forget_loss_rise_vs_heldout"]
    assert did["outcome"] == "INCONCLUSIVE" and "held-out set moved as much as or more" in did["reason"]
    assert audit["outcome"] == "FAILED"
    assert any("moved as much as or more than the forget set" in note for note in audit["notes"])


def test_too_few_examples_are_inconclusive_with_the_size_needed():
    before, after = _pair(np.random.default_rng(3), sizes=(6, 20, 20))
    audit = build_audit(request=_request(), before=before, after=after, primary="accuracy", bootstrap=100)
    verdicts = _verdicts(audit)
    for name in ("forget_loss_rise_vs_heldout", "forget_drop_vs_heldout", "mia_auc"):
        assert verdicts[name]["outcome"] == "INCONCLUSIVE"
        assert "at least 10" in verdicts[name]["reason"]
    assert audit["outcome"] == "INCONCLUSIVE"
    required = build_audit(request=_request(), before=before, after=after, primary="accuracy", bootstrap=100,
                           requirements=parse_requirements("forget_loss_rise_vs_heldout>0"))  # fmt: skip
    assert required["passed"] is False and exit_status(required) == 3  # --require never passes an inconclusive one


def test_a_single_forget_example_is_inconclusive_and_still_written(tmp_path):
    before, after = _pair(np.random.default_rng(8), sizes=(1, 20, 20))
    audit = build_audit(request=_request(), before=before, after=after, primary="accuracy", bootstrap=20)
    assert audit["outcome"] == "INCONCLUSIVE" and audit["effects"]["forget_loss_rise"]["ci_low"] is None
    write_audit(audit, tmp_path)  # JSON has no NaN: the missing interval is null
    assert json.loads((tmp_path / "audit.json").read_text())["effects"]["forget_loss_rise"]["se"] is None
    assert "| forget_loss_rise (nats) |" in (tmp_path / "audit.md").read_text()


def test_a_noisy_small_effect_is_inconclusive_and_names_the_detectable_effect():
    rng = np.random.default_rng(4)
    before, after = _pair(rng, sizes=(20, 20, 20), forget=((1.0, 0.9), (1.1, 0.85)))
    audit = build_audit(request=_request(), before=before, after=after, primary="accuracy", bootstrap=200)
    verdict = _verdicts(audit)["forget_loss_rise_vs_heldout"]
    assert verdict["outcome"] == "INCONCLUSIVE", verdict
    assert "smallest effect detectable at this size (80% power)" in verdict["reason"]
    mia = _verdicts(audit)["mia_auc"]
    assert mia["outcome"] == "INCONCLUSIVE" and "no power" in mia["reason"]  # forget and held-out alike before too


def test_the_threshold_comparison_keeps_equality_on_the_side_it_names():
    """A value exactly at the threshold with no spread: <= and >= pass it, < and > do not."""
    before, after = _pair(np.random.default_rng(5))
    audit = build_audit(request=_request(), before=before, after=before, primary="accuracy", bootstrap=50,
                        requirements=parse_requirements("forget_drop<=0,heldout_drop>=0,retain_drop<0,forget_drop_vs_heldout>0"))  # fmt: skip
    required = {v["criterion"]: v["outcome"] for v in audit["verdicts"] if v["required"]}
    assert required == {"forget_drop": "PASSED", "heldout_drop": "PASSED", "retain_drop": "FAILED",
                        "forget_drop_vs_heldout": "FAILED"}  # fmt: skip


def test_one_model_as_it_is_knows_or_does_not_know_the_forget_set():
    rng = np.random.default_rng(6)
    knows, _ = _pair(rng)
    audit = build_audit(request=_request(), after=knows, primary="accuracy", bootstrap=200)
    assert audit["kind"] == "one model as it is" and audit["outcome"] == "FAILED"
    assert _verdicts(audit)["forget_gap"]["outcome"] == "FAILED" and "forget_loss_rise_vs_heldout" not in _verdicts(audit)
    never_saw = {"forget": _set(*_draw(rng, 300, 1.0, 0.9)), "retain": knows["retain"], "heldout": _set(*_draw(rng, 400, 1.0, 0.9))}
    audit = build_audit(request=_request(), after=never_saw, primary="accuracy", bootstrap=200)
    assert audit["outcome"] == "PASSED", audit["verdicts"]


def test_audit_without_heldout_is_inconclusive():
    before, after = _pair(np.random.default_rng(7))
    del before["heldout"], after["heldout"]
    audit = build_audit(request=_request(), before=before, after=after, primary="accuracy", bootstrap=10)
    assert audit["evidence"] == {} and audit["criteria"]["mia_auc"]["value"] is None and audit["passed"] is None
    assert audit["outcome"] == "INCONCLUSIVE" and exit_status(audit) == 0
    mia = _verdicts(audit)["mia_auc"]
    assert mia["outcome"] == "INCONCLUSIVE" and mia["reason"] == "no held-out set was given"


def test_hashes(tmp_path):
    assert sha256_ids(["b", "a"]) == sha256_ids(["a", "b"]) != sha256_ids(["a"])
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x.bin").write_bytes(b"1")
    first = sha256_path(tmp_path / "f")
    (tmp_path / "f" / "x.bin").write_bytes(b"2")
    assert sha256_path(tmp_path / "f") != first
    assert sha256_path(tmp_path / "f" / "x.bin") == "d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35"
