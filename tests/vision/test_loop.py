import copy
import math
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
    # grad of 1000 * sum(theta) is 1000 everywhere: its norm, recorded before clipping, is 1000 sqrt(n)
    assert log.grad_norms["forget"] == [pytest.approx(1000 * math.sqrt(before.numel()), rel=1e-5)]
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(7.0, rel=1e-4)
    # plain SGD: the step is -lr * 7 * g / |g|, the same on every weight
    torch.testing.assert_close(after - before, torch.full_like(before, -7.0 / math.sqrt(before.numel())))


def test_sfron_clips_and_records_the_masked_forget_gradient(task):
    """The forget gradient is masked before its norm is taken: the norm SFRon clips is that of
    the gradient the weights really get, and the RunLog records it."""
    before, forget, retain = task
    model = copy.deepcopy(before)
    method = build_method("SFRon", {"clip": 0.1})
    settings = OptimizerSettings(forget_lr=0.5, retain_lr=0.5, momentum=0.0, weight_decay=0.0)
    log = unlearn(model, method, forget, retain, strategy="alternate", settings=settings,
                  schedule=Schedule(1, 1, 0), batch_size=len(forget[1]))  # one forget step on the whole set
    reference = copy.deepcopy(before).train()
    names, params = zip(*reference.named_parameters())
    grads = torch.autograd.grad(method.forget_loss(reference, forget, 0.0), params)
    masked = [g * method.forget_mask[n] for n, g in zip(names, grads)]
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in masked])).item()
    unmasked = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])).item()
    assert unmasked > 1.1 * norm > 1.1 * 0.1  # the mask matters, and the clip is active
    assert log.grad_norms["forget"] == [pytest.approx(norm, rel=1e-4)]
    # plain SGD at lr 0.5: the step is -0.5 * clip * masked gradient / its norm
    for (name, p), p0, g in zip(model.named_parameters(), before.parameters(), masked):
        torch.testing.assert_close(p.detach() - p0, -0.5 * 0.1 * g / norm, rtol=1e-4, atol=1e-7, msg=name)


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


class _MemoryCheckpoints:
    """Checkpoints kept in memory; ``stop_after`` saves raise KeyboardInterrupt, as a crash would."""

    def __init__(self, every, stop_after=None):
        self.every, self.stop_after, self.saved, self.saves = every, stop_after, None, 0

    def load(self):
        return copy.deepcopy(self.saved)

    def save(self, state):
        self.saved, self.saves = copy.deepcopy(state), self.saves + 1
        if self.saves == self.stop_after:
            raise KeyboardInterrupt


def test_a_resumed_run_logs_every_steps_gradient_norm_once(task):
    model, forget, retain = task
    run = dict(strategy="dual", settings=OptimizerSettings(1e-3, 1e-2), schedule=Schedule(2, 1, 3), batch_size=16)
    whole = unlearn(copy.deepcopy(model), build_method("NegGrad+"), forget, retain, **run)
    checkpoints = _MemoryCheckpoints(every=3, stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        unlearn(copy.deepcopy(model), build_method("NegGrad+"), forget, retain, checkpoints=checkpoints, **run)
    checkpoints.stop_after = None
    resumed = unlearn(copy.deepcopy(model), build_method("NegGrad+"), forget, retain, checkpoints=checkpoints, **run)
    # the norms of the steps before the interrupt come back from the checkpoint, the rest are new
    assert resumed.grad_steps == whole.grad_steps
    for objective in ("forget", "retain"):
        assert resumed.grad_norms[objective] == pytest.approx(whole.grad_norms[objective])
    assert len(resumed.grad_norms["retain"]) == len(whole.grad_steps["retain"]) > 0
