import copy
import time
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from dualoptim.errors import NonFiniteLoss
from dualoptim.optim import Objective
from dualoptim.schedule import Schedule, plan_steps
from dualoptim.strategies import OptimizerSettings
from dualoptim.vision.loop import unlearn
from dualoptim.vision.methods import Method, build_method


@dataclass
class NaNAfter(Method):
    """GA whose loss turns NaN at a given call."""

    after: int = 2
    calls: int = 0

    def forget_loss(self, model, batch, progress):
        self.calls += 1
        loss = -F.cross_entropy(model(batch[0]), batch[1])
        return loss * float("nan") if self.calls > self.after else loss

    def retain_loss(self, model, batch, progress):
        return F.cross_entropy(model(batch[0]), batch[1])


@dataclass
class Push(Method):
    """A forget loss with a huge gradient, to check clipping: L_f = 1000 * sum(theta)."""

    has_retain = False

    def prepare(self, model, forget, retain, generator):
        self.forget_clip = 7.0

    def forget_loss(self, model, batch, progress):
        return 1000.0 * sum(p.sum() for p in model.parameters())


def test_non_finite_loss_stops_the_run_with_the_reason(task):
    model, forget, retain = task
    with pytest.raises(NonFiniteLoss, match=r"forget loss became nan at step \d+ of \d+"):
        unlearn(copy.deepcopy(model), NaNAfter(), forget, retain, strategy="dual",
                settings=OptimizerSettings(1e-3, 1e-2), schedule=Schedule(3, None, None), batch_size=16)


def test_forget_gradient_is_clipped_to_its_global_norm(task):
    model = copy.deepcopy(task[0])
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    settings = OptimizerSettings(forget_lr=1.0, retain_lr=1.0, momentum=0.0, weight_decay=0.0)
    log = unlearn(model, Push(), task[1], task[2], strategy="alternate", settings=settings, schedule=Schedule(1, 1, 0))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert log.grad_norms["forget"][0] > 1000  # recorded before clipping
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(7.0, rel=1e-4)


def test_gradient_norms_follow_the_schedule_and_curves_exclude_their_time(task):
    model, forget, retain = task
    calls = []

    def evaluate(m):
        calls.append(m.training)
        time.sleep(0.1)
        return {"FA": 0.0}

    schedule = Schedule(2, 1, 3)
    start = time.perf_counter()
    log = unlearn(copy.deepcopy(model), build_method("NegGrad+"), forget, retain, strategy="dual",
                  settings=OptimizerSettings(1e-3, 1e-2), schedule=schedule, batch_size=16, evaluate=evaluate, eval_points=2)
    wall = time.perf_counter() - start
    plan = plan_steps(schedule, forget_size=16, retain_size=80, batch_size=16)
    assert log.grad_steps["forget"] == [i for i, s in enumerate(plan) if s == (Objective.FORGET,)] == [0, 4]
    assert log.grad_steps["retain"] == [1, 2, 3, 5, 6, 7]
    assert [p["progress"] for p in log.curve] == [0.0, 0.5, 1.0]
    assert log.seconds < wall - 0.25  # three 0.1 s evaluations are not unlearning time


def test_retrain_starts_from_a_fresh_initialisation(task):
    model = copy.deepcopy(task[0])
    log = unlearn(model, build_method("Retrain"), task[1], task[2], strategy="alternate",
                  settings=OptimizerSettings(0.05, 0.05), schedule=Schedule(1, 0, 1), batch_size=16)
    assert log.steps == 1
    # one small SGD step from the trained weights could not move them this far
    first_before, first_after = next(task[0].parameters()), next(model.parameters())
    assert (first_before - first_after).abs().mean() > 0.05
