"""The TOFU GPU preset resolves to the DualOptim+ reference scripts' numbers (docs/tofu.md, "Settings
against the reference scripts")."""

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
