"""The task-independent sweep: factors, selection in both directions, grid extension, the preset layer."""

import pytest
import yaml

from dualoptim.sweep import (
    Objective,
    best_point,
    best_rates,
    check_factors,
    edge_extension,
    grid_edges,
    grid_table,
    run_grid,
    select,
    write_best_preset,
)

GAP = Objective("Gap")
OVR = Objective("OVR", higher_is_better=True)


def points(score, values, failed=()):
    return [{"factor": f, "forget_lr": f * 1e-4, score: v, "failed": int(f in failed)} for f, v in values.items()]


def test_factors_must_be_positive_distinct_numbers():
    assert check_factors([1, 0.3]) == [1.0, 0.3]
    for bad, message in (([], "positive"), ([1, 0], "positive"), ([1, -2], "positive"), ([1, 1.0], "differ")):
        with pytest.raises(ValueError, match=message):
            check_factors(bad)


def test_selection_follows_the_objectives_direction_and_skips_failed_points():
    line = points("OVR", {0.1: 40.0, 1: 55.0, 10: 70.0}, failed={10})
    assert best_point(line, OVR)["factor"] == 1  # 10 scores higher but one of its runs stopped
    assert best_point(points("Gap", {0.1: 4.0, 1: 2.5, 10: 3.0}), GAP)["factor"] == 1
    assert best_point(points("OVR", {0.1: 50.0, 1: 60.0, 10: None}), OVR)["factor"] == 1
    assert best_point(points("OVR", {1: None}), OVR) is None
    grid = {"GA": {"dual": points("Gap", {0.3: 2.0, 3: 1.0}), "joint": points("Gap", {0.3: None})}}
    # 3 x 1e-4 printed with 3 significant digits; a pair without a finished point is left out
    assert best_rates(grid, GAP, "forget_lr") == {"GA": {"dual": 3e-4}}
    assert best_rates(grid, Objective("Gap", higher_is_better=True), "forget_lr") == {"GA": {"dual": 3e-5}}


def test_the_grid_extends_past_the_end_where_the_best_score_sits():
    assert edge_extension(points("OVR", {1: 50.0, 2: 60.0, 5: 70.0}), OVR) == 12.5
    assert edge_extension(points("OVR", {0.5: 70.0, 1: 60.0, 2: 50.0}), OVR) == 0.25
    assert edge_extension(points("OVR", {0.5: 50.0, 1: 70.0, 2: 60.0}), OVR) is None
    assert edge_extension(points("Gap", {1: 3.0, 2: 1.0}), GAP) == 4.0
    assert edge_extension(points("OVR", {1: 3.0}), OVR) is None


def test_run_grid_runs_each_factor_then_only_the_pairs_at_an_edge():
    # OVR of a pair peaks at a factor of its own: 4 for (L, a), inside the grid for (L, b)
    peak = {("L", "a"): 4.0, ("L", "b"): 1.0}
    calls = []

    def run_factor(factor, pairs):
        calls.append((factor, pairs))
        wanted = [p for p in peak if pairs is None or p[1] in pairs.get(p[0], [])]
        return {p: {"forget_lr": factor * 1e-5, "OVR": -abs(factor - peak[p]), "failed": 0} for p in wanted}

    grid, extended = run_grid([0.5, 1, 2], run_factor, OVR, extend=2)
    assert calls == [(0.5, None), (1.0, None), (2.0, None), (4.0, {"L": ["a"]}), (8.0, {"L": ["a"]})]
    assert [p["factor"] for p in grid["L"]["a"]] == [0.5, 1, 2, 4, 8]
    assert [p["factor"] for p in grid["L"]["b"]] == [0.5, 1, 2]
    assert extended == [{"factor": 4.0, "pairs": {"L": ["a"]}}, {"factor": 8.0, "pairs": {"L": ["a"]}}]
    assert best_rates(grid, OVR, "forget_lr") == {"L": {"a": 4e-5, "b": 1e-5}}
    assert run_grid([1, 2], run_factor, OVR, extend=0)[1] == []
    with pytest.raises(ValueError, match="extend must be >= 0"):
        run_grid([1], run_factor, OVR, extend=-1)
    # a grid of one factor has no step to repeat: an error naming it, before anything runs
    calls.clear()
    with pytest.raises(ValueError, match=r"a grid of one factor \(2\) has no step to extend by"):
        run_grid([2], run_factor, OVR, extend=1)
    assert calls == []
    assert run_grid([2], run_factor, OVR, extend=0)[0]["L"]["a"][0]["factor"] == 2


def test_an_edge_left_after_the_last_extension_is_reported_with_its_reason():
    peak = {("L", "a"): 100.0, ("L", "b"): 1.0}  # (L, a) peaks far past the grid

    def run_factor(factor, pairs):
        wanted = [p for p in peak if pairs is None or p[1] in pairs.get(p[0], [])]
        return {p: {"forget_lr": factor * 1e-5, "OVR": -abs(factor - peak[p]), "failed": 0} for p in wanted}

    grid, extended = run_grid([0.5, 1, 2], run_factor, OVR, extend=2)
    assert [e["factor"] for e in extended] == [4.0, 8.0]
    (edge,) = grid_edges(grid, OVR, "forget_lr", 2)
    assert edge == {"method": "L", "strategy": "a", "edge": "upper", "forget_lr": 8e-5,
                    "reason": "extension limit reached (2 rounds, --extend)"}  # fmt: skip
    assert grid_edges(run_grid([0.5, 1, 2], run_factor, OVR, 0)[0], OVR, "forget_lr", 0)[0]["reason"] == (
        "grid extension off (--extend 0)")


def test_a_run_that_did_not_unlearn_is_never_selected_and_the_control_can_refuse_a_pair():
    line = points("OVR", {0.5: 60.0, 1: 55.0, 2: 50.0})
    line[0]["did_not_unlearn"] = True  # the highest OVR, but its runs stayed where the target was
    assert best_point(line, OVR)["factor"] == 1
    grid = {"IDK+GD": {"dual": line}, "GA+GD": {"dual": points("OVR", {1: 70.0, 2: 65.0})}}
    # the do-nothing control: 58 for the targeted loss (beats every run that unlearned), 40 for GA+GD
    controls = {"IDK+GD": {"dual": 58.0}, "GA+GD": {"dual": 40.0}}
    best, refused = select(grid, OVR, "forget_lr", controls)
    assert best == {"GA+GD": {"dual": 1e-4}}
    (refusal,) = refused
    assert (refusal["method"], refusal["control"], refusal["best"]) == ("IDK+GD", 58.0, 55.0)
    assert refusal["reason"] == ("the do-nothing control scores OVR 58.00, at least as good as the best run's 55.00 "
                                 "at forget_lr 0.0001")  # fmt: skip
    # a tie goes to doing nothing; a Gap must be strictly lower than the control's
    assert select({"GA": {"dual": points("Gap", {1: 2.0})}}, GAP, "forget_lr", {"GA": {"dual": 2.0}})[0] == {}
    assert select({"GA": {"dual": points("Gap", {1: 1.9})}}, GAP, "forget_lr", {"GA": {"dual": 2.0}})[0] == {
        "GA": {"dual": 1e-4}}
    # every rate flagged: refused, naming them
    flagged = points("OVR", {1: 90.0, 2: 80.0})
    for p in flagged:
        p["did_not_unlearn"] = True
    best, (refusal,) = select({"IDK+GD": {"dual": flagged}}, OVR, "forget_lr")
    assert best == {} and refusal["reason"].startswith("every finished forget_lr did not unlearn")
    assert "0.0001, 0.0002" in refusal["reason"]


def test_table_and_preset_layer(tmp_path):
    grid = {"ME+GD": {"dual": points("OVR", {1: 50.0, 3: 61.234}, failed=set()) + [
        {"factor": 10, "forget_lr": 1e-3, "OVR": None, "failed": 1}]}}
    grid["ME+GD"]["dual"][1]["criterion_std"] = 1.5
    grid["IDK+GD"] = {"dual": points("OVR", {1: 93.0, 3: 80.0})}
    grid["IDK+GD"]["dual"][0]["did_not_unlearn"] = True
    controls = {"ME+GD": {"dual": 40.0}, "IDK+GD": {"dual": 92.0}}
    best, refused = select(grid, OVR, "forget_lr", controls)
    edges = grid_edges(grid, OVR, "forget_lr", 0)
    table = grid_table(grid, OVR, "forget_lr", best, controls, edges, refused)
    assert ("| ME+GD | dual | 0.0001: 50.00, 0.0003: 61.23 ± 1.50, 0.001: failed | 40.00 | "
            "0.0003 (61.23 ± 1.50) |") in table  # fmt: skip
    assert ("| IDK+GD | dual | 0.0001: 93.00 (did not unlearn), 0.0003: 80.00 | 92.00 | refused (see below) |"
            in table)  # fmt: skip
    assert ("- IDK+GD/dual: no forget_lr selected: the do-nothing control scores OVR 92.00, at least as good as the "
            "best run's 80.00 at forget_lr 0.0003") in table  # fmt: skip
    assert "- IDK+GD/dual: the best forget_lr 0.0003 sits at the upper edge" in table
    write_best_preset(tmp_path / "best.yaml", {"unlearn": {"forget_lrs": best}}, "tuned\nsecond line")
    text = (tmp_path / "best.yaml").read_text()
    assert text.startswith("# tuned\n# second line\n")
    assert yaml.safe_load(text) == {"unlearn": {"forget_lrs": {"ME+GD": {"dual": 3e-4}}}}
