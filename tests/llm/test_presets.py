"""The TOFU GPU preset resolves to the DualOptim+ reference scripts' numbers (docs/tofu.md, "Settings
against the reference scripts")."""

import math

import pytest

from dualoptim.config import load_config
from dualoptim.llm.config import TofuConfig, schedule, section_of

FORGET10_ROWS = 400


def _objectives(config, strategy):
    section = section_of(config, strategy, config.unlearn.forget_lr)
    if strategy == "joint":
        return section, ["joint"] * section.steps
    alternation = schedule(config)
    return section, [alternation.objective_at(step).value for step in range(section.steps)]


def test_phi15_preset_runs_the_reference_steps_rows_and_warm_up():
    config = load_config(TofuConfig, "tofu", ["tofu-phi15"])
    u = config.unlearn
    rows_per_step = u.batch_size * u.gradient_accumulation_steps
    assert rows_per_step == 40  # batch 4 x accumulation 5 x 2 GPUs in the reference
    forget_batches_per_epoch = FORGET10_ROWS // rows_per_step
    section, objectives = _objectives(config, "dual+")
    assert (objectives.count("forget"), objectives.count("retain")) == (50, 250)  # max_steps=300, 1:5
    assert objectives.count("forget") == 5 * forget_batches_per_epoch  # five epochs of the forget set
    assert section.warmup_steps == 6 * forget_batches_per_epoch  # one epoch of the alternation
    assert (section.forget_coeff, section.lr_scheduler, section.weight_decay) == (1.0, "linear", 0.01)
    joint, objectives = _objectives(config, "joint")
    assert objectives.count("joint") == 5 * forget_batches_per_epoch  # num_epochs=5 in baselines.sh
    assert (joint.warmup_steps, joint.forget_coeff) == (forget_batches_per_epoch, 0.1)


def _reference_epoch_steps(forget_rows, retain_rows, rows_per_step, forget_freq=1, retain_freq=5):
    """forget.py / real_world_unlearn.py of DualOptimPlus: the steps of one epoch of an alternating run,
    counted on whichever set runs out first at the 1:5 pattern."""
    if math.ceil(forget_rows / forget_freq) <= math.ceil(retain_rows / retain_freq):
        return int((1 + retain_freq / forget_freq) * math.ceil(forget_rows / rows_per_step))
    return int((1 + forget_freq / retain_freq) * math.ceil(retain_rows / rows_per_step))


@pytest.mark.parametrize(
    ("presets", "forget_rows", "retain_rows", "passes"),
    [
        (["tofu-tiny"], 400, 3600, 5),
        (["tofu-tiny", "tofu-small"], 400, 3600, 5),
        (["tofu-phi15"], 400, 3600, 5),
        (["tofu-llama2-7b"], 40, 3960, 5),
        # real person: the epoch is counted on the 400 neighbour rows, so 5 epochs are one forget pass
        (["real-world-llama3-8b"], 400, 400, 1),
        (["real-world-tiny"], 400, 400, 1),
    ],
)
def test_every_llm_preset_makes_the_reference_number_of_forget_passes(presets, forget_rows, retain_rows, passes):
    config = load_config(TofuConfig, "tofu", presets)
    u = config.unlearn
    rows_per_step = u.batch_size * u.gradient_accumulation_steps
    epoch = _reference_epoch_steps(forget_rows, retain_rows, rows_per_step)
    section, objectives = _objectives(config, "dual")
    assert section.steps == 5 * epoch  # num_epochs 5
    assert section.warmup_steps == epoch
    assert objectives.count("forget") * rows_per_step == passes * forget_rows  # whole passes, nothing left over
    # joint (baselines.sh): one joint step per forget batch, five epochs of the paired (forget-sized) set
    joint, objectives = _objectives(config, "joint")
    assert len(objectives) == 5 * math.ceil(forget_rows / rows_per_step)
    # every preset lists both alternating baselines beside dual and dual+
    assert {"joint", "alternate", "alternate-2lr", "dual", "dual+"} <= set(config.strategies)
