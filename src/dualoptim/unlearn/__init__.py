"""The unlearning loop, schedules of forget and retain steps, strategies (optimizers) and masks."""

from dualoptim.unlearn.loop import NonFiniteLoss, RunLog, unlearn
from dualoptim.unlearn.schedules import Schedule, plan_steps
from dualoptim.unlearn.strategies import STRATEGIES, OptimizerSettings, build_optimizer, register_strategy

__all__ = [
    "STRATEGIES",
    "NonFiniteLoss",
    "OptimizerSettings",
    "RunLog",
    "Schedule",
    "build_optimizer",
    "plan_steps",
    "register_strategy",
    "unlearn",
]
