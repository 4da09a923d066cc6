"""The two objectives of unlearning and how an optimizer is told which one it is stepping."""

from __future__ import annotations

import enum


class Objective(str, enum.Enum):
    """Which loss produced the gradients about to be stepped: the forget or the retain loss."""

    FORGET = "forget"
    RETAIN = "retain"

    @classmethod
    def parse(cls, value: object) -> Objective:
        """Accept an ``Objective`` or its string value; anything else is a ``ValueError`` naming it."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        raise ValueError(f"objective must be 'forget' or 'retain', got {value!r}")


class ObjectiveMixin:
    """``set_objective`` and the step-time lookup shared by both optimizers.

    Wrappers such as ``accelerate``, ``transformers.Trainer`` and ``torch.amp.GradScaler`` call
    ``step()`` with no arguments, so the objective can also be set ahead of the step.
    """

    _objective: Objective | None = None
    #: Attributes beyond torch's defaults/state/param_groups that a copy or a pickle must keep.
    _PICKLED_ATTRIBUTES: tuple[str, ...] = ("_objective",)

    def __getstate__(self) -> dict:
        # torch's Optimizer.__getstate__ keeps only defaults, state and param_groups, so
        # copy.deepcopy or pickle would drop the objective and the inner optimizers of a wrapper.
        state = super().__getstate__()  # type: ignore[misc]
        state.update(
            {name: self.__dict__[name] for name in self._PICKLED_ATTRIBUTES if name in self.__dict__}
        )
        return state

    def set_objective(self, objective: str | Objective) -> None:
        """Make ``objective`` the default for every following ``step()`` called without one."""
        self._objective = Objective.parse(objective)

    @property
    def objective(self) -> Objective | None:
        """The objective last given to ``set_objective`` (``None`` before the first)."""
        return self._objective

    def _resolve_objective(self, objective: str | Objective | None) -> Objective:
        if objective is not None:
            return Objective.parse(objective)
        if self._objective is None:
            raise ValueError(
                f"{type(self).__name__}.step() needs an objective: pass step(objective='forget'|'retain') "
                "or call set_objective(...) first"
            )
        return self._objective
