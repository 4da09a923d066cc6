"""How forget and retain steps interleave (the papers' Algorithm 1, ``docs/design.md`` §1), for every task.

An unlearning run is ``outer_iterations`` repetitions of ``forget_steps`` forget steps followed by
``retain_steps`` retain steps. ``None`` steps mean one full pass over that set (RL, SalUn and
SCRUB on images); a fixed 1:5 ratio is SFRon's schedule and the LLM one. The image loop walks the
whole plan (:func:`plan_steps`); the LLM Trainer asks for the objective of its current optimizer
step (:meth:`Schedule.objective_at`), so the pattern survives a resume from a checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dualoptim.optim import Objective

__all__ = ["Schedule", "Step", "plan_steps"]

#: one optimizer step: the objectives whose losses it sums (one, or forget and retain for joint).
Step = tuple[Objective, ...]


@dataclass(frozen=True)
class Schedule:
    """``outer_iterations`` x (``forget_steps`` forget, ``retain_steps`` retain); None = a full pass."""

    outer_iterations: int = 5
    forget_steps: int | None = None
    retain_steps: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.outer_iterations, bool) or not isinstance(self.outer_iterations, int):
            raise ValueError(f"outer_iterations must be an integer >= 1, got {self.outer_iterations!r}")
        if self.outer_iterations < 1:
            raise ValueError(f"outer_iterations must be >= 1, got {self.outer_iterations}")
        for name in ("forget_steps", "retain_steps"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None (a full pass), got {value}")

    def objective_at(self, step: int) -> Objective:
        """Objective of optimizer step ``step`` (0-based) of the repeating fixed-ratio pattern."""
        if self.forget_steps is None or self.retain_steps is None:
            raise ValueError("objective_at needs fixed forget_steps and retain_steps, not a full pass (None)")
        if self.forget_steps + self.retain_steps == 0:
            raise ValueError("the schedule has no steps: set forget_steps or retain_steps above 0")
        period = self.forget_steps + self.retain_steps
        return Objective.FORGET if step % period < self.forget_steps else Objective.RETAIN


def plan_steps(
    schedule: Schedule,
    *,
    forget_size: int,
    retain_size: int,
    batch_size: int,
    has_forget: bool = True,
    has_retain: bool = True,
    joint: bool = False,
) -> list[Step]:
    """The ordered list of steps of one run.

    A method without a forget (retain) loss takes no forget (retain) steps. A ``joint`` run makes
    ``max(forget_steps, retain_steps)`` steps per outer iteration, each summing the forget loss on
    the next forget batch and the retain loss on the next retain batch.
    """
    forget_steps = _steps(schedule.forget_steps, forget_size, batch_size) if has_forget else 0
    retain_steps = _steps(schedule.retain_steps, retain_size, batch_size) if has_retain else 0
    if forget_steps + retain_steps == 0:
        raise ValueError("the schedule has no steps: set forget_steps or retain_steps above 0")
    if joint:
        both = tuple(o for o, n in ((Objective.FORGET, forget_steps), (Objective.RETAIN, retain_steps)) if n)
        iteration = [both] * max(forget_steps, retain_steps)
    else:
        iteration = [(Objective.FORGET,)] * forget_steps + [(Objective.RETAIN,)] * retain_steps
    return iteration * schedule.outer_iterations


def _steps(steps: int | None, size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size) if steps is None else steps
