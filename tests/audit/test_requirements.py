"""--require parsing and the verdict of each criterion."""

import pytest

from dualoptim.audit.requirements import DEFAULT_REQUIREMENTS, Requirement, judge, overall, parse_requirements


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
    required = parse_requirements("mia_auc<=0.65,forget_score<10")
    verdicts = judge({"mia_auc": 0.58, "forget_score": 12.0, "retain_drop": 1.0}, required, {"forget_loss_rise": "no held-out set"},
                     {"mia_auc": (0.52, 0.64), "retain_drop": (0.5, 1.5)})  # fmt: skip
    by_name = {v.requirement.criterion: v for v in verdicts}
    assert by_name["mia_auc"].requirement.required and by_name["mia_auc"].outcome == "PASSED"  # 0.64 <= 0.65, not the 0.6 default
    assert by_name["forget_score"].outcome == "FAILED"
    assert by_name["retain_drop"].passed and by_name["retain_drop"].requirement.role == "advisory"
    assert by_name["forget_loss_rise"].outcome == "INCONCLUSIVE" and by_name["forget_loss_rise"].reason == "no held-out set"
    assert len(verdicts) == len(DEFAULT_REQUIREMENTS) + 1


@pytest.mark.parametrize(("op", "interval", "outcome"), [
    ("<=", (0.4, 0.6), "PASSED"), ("<", (0.4, 0.6), "INCONCLUSIVE"), ("<", (0.6, 0.6), "FAILED"), ("<=", (0.6, 0.6), "PASSED"),
    ("<=", (0.61, 0.7), "FAILED"), ("<=", (0.5, 0.7), "INCONCLUSIVE"),
    (">", (0.6, 0.9), "INCONCLUSIVE"), (">", (0.6, 0.6), "FAILED"), (">=", (0.6, 0.6), "PASSED"), (">=", (0.6, 0.9), "PASSED"), (">", (0.61, 0.9), "PASSED"), (">", (0.5, 0.9), "INCONCLUSIVE"),
    (">=", (0.3, 0.59), "FAILED"),
])  # fmt: skip
def test_a_verdict_reads_the_whole_interval(op, interval, outcome):
    """Both ends on the wanted side pass, both on the other side fail, a straddle is inconclusive;
    an end exactly at the threshold is on the side the operator names (<= keeps it, < does not)."""
    [verdict] = judge({"mia_auc": sum(interval) / 2}, [Requirement("mia_auc", op, 0.6)], intervals={"mia_auc": interval},
                      defaults=())  # fmt: skip
    assert verdict.outcome == outcome, (op, interval)
    assert verdict.passed is {"PASSED": True, "FAILED": False, "INCONCLUSIVE": None}[outcome]


def test_overall_outcome_ignores_advisory_criteria_and_never_passes_an_inconclusive_one():
    def verdicts(*outcomes, role="headline"):
        values = {"passed": 0.5, "failed": 0.9, "open": 0.6}
        intervals = {"passed": (0.4, 0.5), "failed": (0.8, 0.95), "open": (0.5, 0.7)}
        return [judge({"mia_auc": values[o]}, [], intervals={"mia_auc": intervals[o]},
                      defaults=[Requirement("mia_auc", "<=", 0.6, required=False, role=role)])[0] for o in outcomes]  # fmt: skip

    assert overall(verdicts("passed", "passed")) == "PASSED"
    assert overall(verdicts("passed", "open")) == "INCONCLUSIVE"
    assert overall(verdicts("open", "failed")) == "FAILED"
    assert overall(verdicts("passed") + verdicts("failed", role="advisory")) == "PASSED"
    assert overall([]) == "INCONCLUSIVE"
