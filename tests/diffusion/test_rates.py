"""Every strategy honours both learning rates on the diffusion task (the loop, Adam settings resolved as the benchmark does).

The losses are linear in one weight vector, so the first forget (retain) step of Adam moves every
coordinate by exactly its learning rate. The two rates are 1000x apart.
"""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from dualoptim.config import from_dict
from dualoptim.diffusion.benchmark import resolve_settings
from dualoptim.diffusion.config import DiffusionConfig
from dualoptim.diffusion.loop import unlearn
from dualoptim.diffusion.methods import Context, Method
from dualoptim.strategies import STRATEGIES

FORGET_LR, RETAIN_LR = 1.0, 1e-3


class Weights(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))


@dataclass
class ForgetOnly(Method):
    """L_f = sum(w): a gradient of ones; no retain loss, so the plan has forget steps only."""

    has_retain = False

    def forget_loss(self, model, batch, progress):
        return model.w.sum()


@dataclass
class RetainOnly(Method):
    has_forget = False

    def retain_loss(self, model, batch, progress):
        return model.w.sum()


def _move(strategy, method):
    config = from_dict(DiffusionConfig, {"unlearn": {"optim": {"forget_lr": {strategy: FORGET_LR},
                                                               "retain_lr": {strategy: RETAIN_LR}}}})  # fmt: skip
    settings = resolve_settings(config, "SFRon", strategy)
    assert settings.family == "adam"
    data = (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    model = Weights()
    unlearn(model, method, Context(None, 0, 2, data, data, data, 0.0, torch.Generator()), strategy=strategy,
            settings=settings, iterations=1, batch_size=4)  # fmt: skip
    return -model.w.detach()


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES.names() if not STRATEGIES.get(s).single_rate])
def test_a_forget_step_uses_the_forget_rate_and_a_retain_step_the_retain_rate(strategy):
    assert torch.allclose(_move(strategy, ForgetOnly()), torch.full((3,), FORGET_LR), rtol=1e-5)
    assert torch.allclose(_move(strategy, RetainOnly()), torch.full((3,), RETAIN_LR), rtol=1e-5)


def test_alternate_is_the_references_one_adam_at_one_rate():
    """The reference's non-dual diffusion runs step one Adam at lr (forget_lr only reaches --dual):
    alternate refuses two rates here and steps both objectives at its one rate."""
    with pytest.raises(ValueError, match=r"alternate steps both objectives at one learning rate .*use alternate-2lr"):
        _move("alternate", ForgetOnly())
    config = from_dict(DiffusionConfig, {"unlearn": {"optim": {"forget_lr": {"alternate": RETAIN_LR},
                                                               "retain_lr": {"alternate": RETAIN_LR}}}})  # fmt: skip
    settings = resolve_settings(config, "SFRon", "alternate")
    for method in (ForgetOnly(), RetainOnly()):
        data = (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
        model = Weights()
        unlearn(model, method, Context(None, 0, 2, data, data, data, 0.0, torch.Generator()), strategy="alternate",
                settings=settings, iterations=1, batch_size=4)  # fmt: skip
        assert torch.allclose(-model.w.detach(), torch.full((3,), RETAIN_LR), rtol=1e-5)
