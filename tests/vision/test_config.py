import pytest
import torch

from dualoptim.config import from_dict, load_config, preset_names, to_dict
from dualoptim.schedule import Schedule
from dualoptim.vision.benchmark import resolve_schedule, resolve_settings, validate
from dualoptim.vision.config import VisionConfig


def load_preset(*names):
    return load_config(VisionConfig, "vision", names)


def config_from_dict(cls, data, base=None):
    return from_dict(cls, data, base=base)


def test_presets_ship_and_validate():
    assert {"digits", "fashion-mnist", "cifar10-resnet18"} <= set(preset_names("vision"))
    for name in preset_names("vision"):
        validate(load_preset(name))
    # The digits preset spells out the embedded default.
    assert to_dict(load_preset("digits")) == to_dict(VisionConfig())


def test_resolution_of_schedules_and_learning_rates():
    config = load_preset("fashion-mnist")
    assert resolve_schedule(config, "RL") == Schedule(5, None, 32)
    assert resolve_schedule(config, "SFRon") == Schedule(40, 1, 5)  # SFRon's published 1:5 ratio
    config = config_from_dict(VisionConfig, {"unlearn": {"methods": {"SCRUB": {"forget_lr": {"dual": 7e-4}}}}}, base=config)
    assert resolve_settings(config, "SCRUB", "dual").forget_lr == 7e-4
    assert resolve_settings(config, "RL", "dual").forget_lr == config.unlearn.optim.forget_lr["dual"]
    assert resolve_settings(config, "SCRUB", "dual").retain_lr == 0.01
    # 8-bit strategies use the rates of their float32 twin unless given their own.
    assert resolve_settings(config, "SCRUB", "dual-8bit") == resolve_settings(config, "SCRUB", "dual")
    assert resolve_settings(config, "SFRon", "dual+-8bit") == resolve_settings(config, "SFRon", "dual+")
    config = config_from_dict(VisionConfig, {"unlearn": {"optim": {"forget_lr": {"dual+-8bit": 5e-4}}}}, base=config)
    assert resolve_settings(config, "RL", "dual+-8bit").forget_lr == 5e-4


def test_layered_presets_override_key_by_key(tmp_path):
    (tmp_path / "best.yaml").write_text("unlearn: {methods: {SalUn: {forget_lr: {dual: 1.0e-3}}}}\n")
    config = load_preset("fashion-mnist", str(tmp_path / "best.yaml"))
    assert config.data.dataset == "fashion-mnist"
    assert config.unlearn.methods["SalUn"].forget_lr["dual"] == 1e-3
    assert config.unlearn.methods["SalUn"].forget_lr["alternate"] == 0.003  # the preset's, untouched
    assert config.unlearn.methods["SFRon"].schedule.outer_iterations == 40  # untouched


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": {"datset": "digits"}}, r"unknown config key 'data.datset'; valid: dataset, forget"),
        ({"unlearn": {"methods": {"SCRUB": {"schedule": {"outer": 3}}}}}, r"unknown config key 'unlearn.methods.SCRUB.schedule.outer'"),
        ({"train": {"epochs": "many"}}, r"config key 'train.epochs' must be int, got 'many'"),
        ({"seeds": 3}, r"config key 'seeds' must be a list, got 3"),
    ],
)
def test_bad_config_keys_are_named(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(VisionConfig, data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"methods": ["GA", "Forgetron"]}, r"unknown method 'Forgetron'; valid: "),
        ({"strategies": ["dual", "quad"]}, r"unknown strategy 'quad'; valid: joint, alternate, alternate-2lr, dual, dual\+"),
        ({"methods": ["Retrain"]}, r"method 'Retrain' is the retrained reference"),
        ({"data": {"dataset": "imagenet"}}, r"unknown dataset 'imagenet'; valid: digits"),
        ({"unlearn": {"methods": {"SCRUB": {"options": {"beta": 1}}}}}, r"unknown option 'beta' for method SCRUB"),
        ({"unlearn": {"schedule": {"forget_steps": "lots"}}}, r"forget_steps of FT must be an integer or 'pass', got 'lots'"),
        ({"unlearn": {"optim": {"forget_lr": {"dual": -1.0}}}}, r"forget_lr of FT/dual must be > 0, got -1.0"),
        ({"seeds": [1, 1]}, r"duplicated seeds: \[1, 1\]"),
        ({"device": "abacus"}, r"unknown device 'abacus'; valid: auto, cpu, cuda, cuda:N"),
    ],
)
def test_validate_names_the_bad_value(data, message):
    with pytest.raises(ValueError, match=message):
        validate(config_from_dict(VisionConfig, data))


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"unknown preset 'mnist'; valid: cifar10-resnet18, digits, fashion-mnist"):
        load_preset("mnist")


def test_tofu_presets_are_not_classification_presets():
    assert not any(name.startswith("tofu") for name in preset_names("vision"))
    with pytest.raises(ValueError, match=r"unknown preset 'tofu-tiny'; valid: cifar10-resnet18, digits, fashion-mnist"):
        load_preset("tofu-tiny")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match=r"device 'cuda' requested but CUDA is not available"):
        validate(config_from_dict(VisionConfig, {"device": "cuda"}))
