"""--require parsing and the verdict of each criterion."""

import pytest

from dualoptim.audit.requirements import DEFAULT_REQUIREMENTS, Requirement, judge, parse_requirements


def test_parse_requirements():
    parsed = parse_requirements(["mia_auc<=0.55,retain_drop<=2", "ks_p >= 0.05"])
    assert parsed == [Requirement("mia_auc", "<=", 0.55), Requirement("retain_drop", "<=", 2.0), Requirement("ks_p", ">=", 0.05)]
    assert parse_requirements(None) == [] and parse_requirements("") == []


@pytest.mark.parametrize(("text", "message"), [
    ("mia_auc=0.5", "expected CRITERION<=NUMBER"),
    ("accuracy<=3", "unknown criterion 'accuracy'"),
    ("mia_auc<=abc", "expected CRITERION<=NUMBER"),
    ("mia_auc<=1.2.3", "bad threshold"),
])  # fmt: skip
def test_bad_requirements_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_requirements(text)


def test_judge_replaces_defaults_and_marks_absent_values():
    required = parse_requirements("mia_auc<=0.6,forget_score<10")
    verdicts = judge({"mia_auc": 0.58, "forget_score": 12.0, "retain_drop": 1.0}, required, {"ks_p": "no held-out set"})
    by_name = {v.requirement.criterion: v for v in verdicts}
    assert by_name["mia_auc"].requirement.required and by_name["mia_auc"].passed  # 0.58 <= 0.6, not the 0.55 default
    assert by_name["forget_score"].passed is False
    assert by_name["retain_drop"].passed and not by_name["retain_drop"].requirement.required
    assert by_name["ks_p"].passed is None and by_name["ks_p"].reason == "no held-out set"
    assert len(verdicts) == len(DEFAULT_REQUIREMENTS) + 1
