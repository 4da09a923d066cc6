"""One vocabulary on every command: the same flags, lists written one way, one-line errors."""

import argparse
import json
from pathlib import Path

import pytest

from dualoptim.cli import build_parser, main
from dualoptim.cli.bench import VISION_FLAGS, vision_config
from dualoptim.cli.common import config_from_args
from dualoptim.cli.tofu import TOFU_FLAGS
from dualoptim.llm.config import TofuConfig
from dualoptim.strategies import STRATEGIES

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
SHARED = {"--preset", "--set", "--methods", "--strategies", "--optimizers", "--seeds", "--data", "--cache-dir",
          "--device", "--threads", "--no-progress", "--out"}


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _flags(name: str) -> set[str]:
    return {option for action in _subparser(name)._actions for option in action.option_strings}


@pytest.mark.parametrize("command", ["bench", "sweep", "tofu", "safety", "diffusion"])
def test_every_run_command_speaks_the_shared_vocabulary(command):
    assert SHARED <= _flags(command)


def test_lists_are_comma_or_space_separated_and_optimizers_is_an_alias():
    parse = _subparser("bench").parse_args
    one = vision_config(parse(["--methods", "GA,SFRon", "--strategies", "dual,alternate", "--seeds", "0,2"]))
    two = vision_config(parse(["--methods", "GA", "SFRon", "--optimizers", "dual", "alternate", "--seeds", "0", "2"]))
    assert one == two
    assert (one.methods, one.strategies, one.seeds) == (["GA", "SFRon"], ["dual", "alternate"], [0, 2])


def test_set_writes_lists_as_the_flags_do():
    parse = _subparser("bench").parse_args
    assert vision_config(parse(["--set", "seeds=0,2", "--set", "methods=GA,SFRon"])) == vision_config(
        parse(["--seeds", "0,2", "--methods", "GA,SFRon"]))
    assert vision_config(parse(["--set", "seeds=[0, 2]"])).seeds == [0, 2]


def test_flags_win_over_set_which_wins_over_presets(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("seeds: [7]\nunlearn: {batch_size: 16}\ndevice: cpu\n")
    args = _subparser("bench").parse_args(
        ["--preset", str(preset), "--set", "seeds=[8]", "--set", "unlearn.batch_size=32", "--seeds", "9"])
    config = vision_config(args)
    assert config.seeds == [9] and config.unlearn.batch_size == 32 and config.device == "cpu"


def test_tofu_maps_the_shared_flags_onto_its_config():
    args = _subparser("tofu").parse_args(
        ["--preset", "tofu-tiny", "--losses", "GA+GD,NPO+GD", "--tasks", "1", "2", "--seeds", "3", "--data", "/d",
         "--hub", "--split", "forget05", "--threads", "2", "--device", "cpu"])  # fmt: skip
    config = config_from_args(args, TofuConfig, "tofu", TOFU_FLAGS)
    assert config.losses == ["GA+GD", "NPO+GD"] and config.tasks == ["1", "2"] and config.seeds == [3]
    assert (config.data.path, config.data.source, config.data.split) == ("/d", "hub", "forget05")
    assert (config.threads, config.device) == (2, "cpu")
    # --jobs is the image benchmark's (a TOFU run spreads over devices through torchrun or accelerate)
    assert set(VISION_FLAGS) - {"tasks", "jobs"} <= set(TOFU_FLAGS)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--threads", "many"], "dualoptim bench: error: argument --threads: invalid int value: 'many'"),
        (["tofu", "--frobnicate"], "dualoptim tofu: error: unrecognized arguments: --frobnicate"),
        (["bench", "--set", "unlearn.batch_size=0"], "dualoptim bench: error: unlearn.batch_size must be >= 1, got 0"),
        (["bench", "--set", "train.epochs=0"], "dualoptim bench: error: train.epochs must be >= 1, got 0"),
        (["bench", "--set", "unlearn.schedule.outer_iterations=null"],
         "dualoptim bench: error: outer_iterations must be an integer >= 1, got None"),
        (["bench", "--methods", "Foo"], "dualoptim bench: error: unknown method 'Foo'; valid: FT, GA, NegGrad+, RL,"),
        (["bench", "--set", "unlearn.optim.family=adam", "--strategies", "dual-8bit"],
         "dualoptim bench: error: 8-bit strategies of the adam family need weight_decay"),
        (["tofu", "--set", "unlearn.lr_scheduler=nope"], "dualoptim tofu: error: unknown unlearn.lr_scheduler 'nope'; valid: linear"),
        (["tofu", "--set", "unlearn.warmup_steps=-3"], "dualoptim tofu: error: unlearn.warmup_steps must be >= 0, got -3"),
        (["bench", "--set", "unlearn.optim.famly=sgd"], "dualoptim bench: error: unknown config key 'unlearn.optim.famly'; valid: family, forget_betas"),
        (["bench", "--set", "seeds=three"], "dualoptim bench: error: config key 'seeds[0]' must be int, got 'three'"),
        (["tofu", "--strategies", "quad"], "dualoptim tofu: error: unknown strategy 'quad'; valid: joint, alternate"),
        (["sweep", "--factors", "1,x"], "dualoptim sweep: error: --factors must be numbers, got '1,x'"),
        (["config", "audio"], "dualoptim config: error: unknown task 'audio'; valid: vision, tofu, safety, diffusion, unlearn-image, unlearn-llm, train"),
        (["presets", "audio"], "dualoptim presets: error: unknown task 'audio'; valid: diffusion, safety, tofu, vision"),
    ],
)
def test_every_error_is_one_line_with_exit_status_2(argv, message, capsys, tmp_path):
    assert main([*argv, *(["--out", str(tmp_path / "o")] if argv[0] in ("bench", "tofu", "sweep") else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_strategies_presets_and_config_are_listed(capsys):
    assert main(["strategies"]) == 0
    printed = capsys.readouterr().out
    assert [line.split()[0] for line in printed.splitlines()] == STRATEGIES.names()
    assert main(["presets"]) == 0
    printed = capsys.readouterr().out
    assert "vision:" in printed and "tofu:" in printed and "  fashion-mnist" in printed and "  tofu-tiny" in printed
    assert main(["config", "vision"]) == 0
    printed = capsys.readouterr().out
    assert "unlearn.optim.family (str, default \"sgd\"): the pre-training optimizer" in printed
    assert main(["config", "tofu"]) == 0
    assert "unlearn.forget_lr (float, default 1e-05): forget learning rate" in capsys.readouterr().out


def test_the_command_stored_with_results_is_one_that_runs():
    import shlex

    from dualoptim.cli.common import command_line

    args = _subparser("tofu").parse_args(["--hub", "--set", "data.format.question_start=Q: x", "--seeds", "0", "1"])
    words = command_line("tofu", args)
    assert words[:2] == ["dualoptim", "tofu"] and "--hub" in words and "hub" not in words
    assert words[words.index("--seeds") + 1] == "0,1"
    again = _subparser("tofu").parse_args(shlex.split(shlex.join(words))[2:])
    assert (again.hub, again.overrides, again.seeds) == (args.hub, args.overrides, ["0,1"])


def test_config_lists_the_defaults_a_section_really_has(capsys):
    assert main(["config", "vision"]) == 0
    printed = capsys.readouterr().out
    assert "unlearn.schedule.outer_iterations (int or null, default 3)" in printed
    assert 'unlearn.schedule.forget_steps (int or str or null, default "pass")' in printed


def test_help_exits_cleanly(capsys):
    assert main(["bench", "--help"]) == 0
    assert "--strategies" in capsys.readouterr().out


def _legacy(results: dict) -> dict:
    """The shape results.json had before the shared envelope: ``optimizer`` rows, ``benchmark``, ``env``."""
    old = {k: v for k, v in results.items() if k not in ("task", "environment", "command")}
    old["benchmark"] = {"vision": "image-classification", "tofu": "tofu"}[results["task"]]
    old["env"] = results["environment"]
    for row in old["rows"]:
        row["optimizer"] = row.pop("strategy")
        if "runs" in row:
            row["history"] = {run["task"]: run["history"] for run in row.pop("runs")}
    return old


@pytest.mark.parametrize("folder", ["fashion-mnist", "tofu-small"])
def test_report_reads_results_written_before_the_shared_envelope(folder, tmp_path):
    results = json.loads((RESULTS / folder / "results.json").read_text())
    if "task" in results:
        results = _legacy(results)
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["report", str(tmp_path)]) == 0
    table = (tmp_path / "table.md").read_text()
    strategy = results["rows"][-1]["optimizer"]
    assert f"| {strategy} |" in table and "Strategy" in table


def test_report_refuses_a_file_that_is_not_results(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"rows": [], "task": "audio"}))
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a results file of dualoptim bench or dualoptim tofu" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "no such results file" in capsys.readouterr().err
