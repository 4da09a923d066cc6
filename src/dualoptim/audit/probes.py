"""Robustness probes of a deletion (``docs/design.md`` §7.5): does the forgotten knowledge come back?

Unlearning is often shallow: a few fine-tuning steps, or quantising the weights, bring forgotten
facts back. A task runs the probe (``relearn`` on the retain set, ``relearn`` on a few forget rows,
``int8`` dynamic quantisation, ``4bit`` through bitsandbytes) and re-scores the forget and held-out
sets; :func:`compare_return` turns the scores into numbers with intervals and a reading:

- the forget set's gain (probe minus after, per example, paired) against the held-out set's gain
  over the same probe. The held-out rows are data the model was not trained on in this request;
  a fact that comes back faster than a new one is learned was hidden, not removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dualoptim.audit.record import SetScores
from dualoptim.audit.stats import mean_change, mean_difference

__all__ = ["PROBES", "check_probes", "compare_return"]

#: probe name -> what it does
PROBES = {
    "relearn": "k fine-tuning steps on the retain set, and separately on a few forget rows; how much of the "
    "forget performance returns, against what the same steps teach the held-out rows",
    "int8": "torch dynamic int8 quantisation of the Linear layers (CPU), then the forget set re-scored",
    "4bit": "4-bit NF4 quantisation through bitsandbytes (CUDA), then the forget set re-scored",
}


def check_probes(probes: list[str], *, heldout: bool, device_type: str) -> None:
    """A one-line ``ValueError`` for a probe this request cannot run, before any work."""
    for name in probes:
        if name not in PROBES:
            raise ValueError(f"unknown probe {name!r}; valid: {', '.join(PROBES)}")
    if probes and not heldout:
        raise ValueError(f"the probes {', '.join(probes)} compare the forget set with the held-out set: give --heldout")
    if "4bit" in probes:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ValueError("the 4bit probe needs bitsandbytes (pip install bitsandbytes) and a CUDA GPU; "
                             "it is not installed here (the int8 probe runs on the CPU)") from None  # fmt: skip
        if device_type != "cuda":
            raise ValueError("the 4bit probe needs a CUDA GPU (bitsandbytes 4-bit kernels); use --device cuda or the int8 probe")


def compare_return(
    after: Mapping[str, SetScores], probed: Mapping[str, SetScores], primary: str, what: str, *, exclude: int = 0
) -> dict[str, Any]:
    """The forget set's gain in ``primary`` from ``after`` to ``probed`` against the held-out set's.

    ``exclude``: the first rows of the forget set that the probe trained on (not counted: the rest
    shows whether knowledge comes back beyond the rows it was shown).
    """
    forget_after, forget_probe = after["forget"].values(primary)[exclude:], probed["forget"].values(primary)[exclude:]
    heldout_after, heldout_probe = after["heldout"].values(primary), probed["heldout"].values(primary)
    forget_gain = mean_change(forget_probe, forget_after)  # mean(probe - after)
    heldout_gain = mean_change(heldout_probe, heldout_after)
    faster = mean_difference(forget_probe - forget_after, heldout_probe - heldout_after)
    if faster.low > 0:
        reading = "the forget set came back faster than the held-out set learned: hidden, not removed"
    elif faster.high <= 0:
        reading = "the forget set did not come back faster than the held-out set learned"
    else:
        reading = f"cannot tell at this size (smallest detectable difference {faster.detectable:.3g} points)"
    summary = [
        f"{what}: forget {primary} {forget_after.mean():.2f} -> {forget_probe.mean():.2f} "
        f"(gain {forget_gain.estimate:+.2f}, 95% CI [{forget_gain.low:.2f}, {forget_gain.high:.2f}], {len(forget_after)} scored); "
        f"held-out {heldout_after.mean():.2f} -> {heldout_probe.mean():.2f} (gain {heldout_gain.estimate:+.2f}, "
        f"95% CI [{heldout_gain.low:.2f}, {heldout_gain.high:.2f}])",
        f"forget gain minus held-out gain: {faster.estimate:+.2f} points, 95% CI [{faster.low:.2f}, {faster.high:.2f}]: {reading}",
    ]
    return {"what": what, "metric": primary, "forget_gain": forget_gain.to_json(), "heldout_gain": heldout_gain.to_json(),
            "forget_minus_heldout": faster.to_json(), "reading": reading, "summary": summary,
            "forget_metrics": probed["forget"].metrics, "heldout_metrics": probed["heldout"].metrics}  # fmt: skip
