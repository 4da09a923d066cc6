"""Every strategy honours both learning rates on the image-classification task (the loop, settings
resolved from the config as the benchmark resolves them).

The losses are linear in one weight vector at zero, so the first forget (retain) step of any
optimizer family moves every coordinate by exactly its learning rate. The two rates are 1000x apart.
"""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from dualoptim.config import from_dict
from dualoptim.schedule import Schedule
from dualoptim.strategies import FAMILIES, STRATEGIES
from dualoptim.vision.benchmark import resolve_settings
from dualoptim.vision.config import VisionConfig
from dualoptim.vision.loop import unlearn
from dualoptim.vision.methods import Method

FORGET_LR, RETAIN_LR = 1.0, 1e-3


class Weights(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))


@dataclass
class Linear(Method):
    """L_f = L_r = sum(w): a gradient of ones for either objective."""

    def forget_loss(self, model, batch, progress):
        return model.w.sum()

    def retain_loss(self, model, batch, progress):
        return model.w.sum()


def _settings(strategy, family):
    rates = {"forget_lr": {strategy: FORGET_LR}, "retain_lr": {strategy: RETAIN_LR}}
    # no weight decay: the 8-bit strategies of the adam family refuse it (and at w = 0 it moves nothing)
    optim = {**rates, "family": family, "weight_decay": 0.0, "forget_weight_decay": 0.0}
    config = from_dict(VisionConfig, {"unlearn": {"optim": optim}})
    return resolve_settings(config, "Linear", strategy)


def _move(strategy, family, forget_steps, retain_steps):
    model = Weights()
    data = (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    unlearn(model, Linear(), data, data, strategy=strategy, settings=_settings(strategy, family),
            schedule=Schedule(1, forget_steps, retain_steps), batch_size=4)  # fmt: skip
    return -model.w.detach()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_a_forget_step_uses_the_forget_rate_and_a_retain_step_the_retain_rate(strategy, family):
    # (a joint strategy takes these single-objective steps too: a plan with one objective only)
    assert torch.allclose(_move(strategy, family, 1, 0), torch.full((3,), FORGET_LR), rtol=1e-5)
    assert torch.allclose(_move(strategy, family, 0, 1), torch.full((3,), RETAIN_LR), rtol=1e-5)


def test_a_joint_sgd_step_is_forget_lr_g_f_plus_retain_lr_g_r():
    # both gradients are ones: eta_f * 1 + eta_r * 1 per coordinate
    assert torch.allclose(_move("joint", "sgd", 1, 1), torch.full((3,), FORGET_LR + RETAIN_LR), rtol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_joint_step_of_a_forget_only_plan_uses_the_forget_rate(family):
    assert torch.allclose(_move("joint", family, 1, 0), torch.full((3,), FORGET_LR), rtol=1e-5)
