import pytest

from dualoptim.optim import Objective
from dualoptim.schedule import Schedule, plan_steps

F, R = (Objective.FORGET,), (Objective.RETAIN,)


def test_full_passes_per_outer_iteration():
    # 100 forget examples / 32 = 4 batches; 70 retain / 32 = 3 batches; twice.
    plan = plan_steps(Schedule(2, None, None), forget_size=100, retain_size=70, batch_size=32)
    assert plan == [F, F, F, F, R, R, R] * 2


def test_one_forget_step_per_five_retain_steps():
    plan = plan_steps(Schedule(3, 1, 5), forget_size=10, retain_size=10, batch_size=4)
    assert plan == [F, R, R, R, R, R] * 3


def test_joint_sums_both_losses_on_the_longer_side():
    plan = plan_steps(Schedule(2, 1, 3), forget_size=1, retain_size=1, batch_size=1, joint=True)
    assert plan == [(Objective.FORGET, Objective.RETAIN)] * 6


def test_methods_without_a_loss_take_no_such_steps():
    assert plan_steps(Schedule(2, 2, 3), forget_size=5, retain_size=5, batch_size=1, has_forget=False) == [R] * 6
    assert plan_steps(Schedule(1, 2, 3), forget_size=5, retain_size=5, batch_size=1, has_retain=False, joint=True) == [F] * 2


def test_bad_schedules():
    with pytest.raises(ValueError, match="outer_iterations must be >= 1, got 0"):
        Schedule(0)
    with pytest.raises(ValueError, match="forget_steps must be >= 0 or None"):
        Schedule(1, -1)
    with pytest.raises(ValueError, match="the schedule has no steps"):
        plan_steps(Schedule(1, 0, 0), forget_size=5, retain_size=5, batch_size=1)
