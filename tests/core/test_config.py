"""The one configuration system: typed loading, layering, overrides, errors that name the key."""

from dataclasses import dataclass

import pytest

from dualoptim.config import (
    apply_override,
    describe,
    from_dict,
    load_config,
    option,
    preset_names,
    read_preset,
    to_dict,
)


@dataclass(frozen=True)
class Inner:
    size: int = option("a size", 3)
    betas: tuple[float, float] = option("two betas", (0.9, 0.99))


@dataclass
class Outer:
    name: str = option("a name", "x")
    rate: float = option("a rate", 0.1)
    flag: bool = option("a switch", False)
    items: list[int] = option("some ints", factory=lambda: [1, 2])
    maybe: int | None = option("an optional int", None)
    inner: Inner = option("a section", factory=Inner)
    per: dict[str, Inner] = option("name -> section", factory=dict)


def test_values_are_converted_only_where_lossless():
    config = from_dict(Outer, {"rate": 1, "items": [3], "inner": {"betas": [0.5, 0.6]}, "maybe": 4})
    assert config.rate == 1.0 and isinstance(config.rate, float)
    assert config.inner == Inner(3, (0.5, 0.6)) and config.maybe == 4
    assert from_dict(Outer, {"rate": "1e-3"}).rate == 1e-3  # YAML 1.1 reads 1e-3 as a string
    assert from_dict(Outer, {"items": "4, 5"}).items == [4, 5]  # a comma list, as on the command line


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nmae": "y"}, r"unknown config key 'nmae'; valid: flag, inner, items, maybe, name, per, rate"),
        ({"inner": {"sise": 1}}, r"unknown config key 'inner.sise'; valid: betas, size"),
        ({"inner": {"size": 2.5}}, r"config key 'inner.size' must be int, got 2.5"),
        ({"flag": "yes"}, r"config key 'flag' must be bool, got 'yes'"),
        ({"flag": 1}, r"config key 'flag' must be bool, got 1"),
        ({"items": 3}, r"config key 'items' must be a list, got 3"),
        ({"items": [1, True]}, r"config key 'items\[1\]' must be int, got True"),
        ({"maybe": "four"}, r"config key 'maybe' must be int or null, got 'four'"),
        ({"inner": {"betas": [0.9]}}, r"config key 'inner.betas' needs 2 values, got \[0.9\]"),
        ({"inner": 3}, r"config key 'inner' must be a mapping, got 3"),
        ({"per": {"a": {"size": "big"}}}, r"config key 'per.a.size' must be int, got 'big'"),
    ],
)
def test_bad_values_name_the_key_and_the_type_expected(data, message):
    with pytest.raises(ValueError, match=message):
        from_dict(Outer, data)


def test_layers_merge_key_by_key_and_never_modify_the_base():
    base = from_dict(Outer, {"inner": {"size": 5}, "per": {"a": {"size": 1}}})
    layered = from_dict(Outer, {"inner": {"betas": [0.1, 0.2]}, "per": {"b": {}}, "name": "y"}, base=base)
    assert layered.inner == Inner(5, (0.1, 0.2))  # size from the first layer survives
    assert set(layered.per) == {"a", "b"} and layered.per["a"].size == 1
    assert base.name == "x" and base.inner == Inner(5, (0.9, 0.99)) and set(base.per) == {"a"}


def test_overrides_parse_yaml_values_into_nested_keys():
    data = {}
    apply_override(data, "inner.size=7")
    apply_override(data, "items=[4, 5]")
    apply_override(data, "name=a=b")  # only the first '=' splits
    assert data == {"inner": {"size": 7}, "items": [4, 5], "name": "a=b"}
    for bad in ("size", "=3", "inner..size=3"):
        with pytest.raises(ValueError, match="--set needs KEY=VALUE"):
            apply_override({}, bad)
    with pytest.raises(ValueError, match="'name' is not a section"):
        apply_override({"name": "x"}, "name.first=3")


def test_load_config_layers_presets_then_overrides(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("inner: {size: 9}\nname: first\n")
    second.write_text("name: second\n")
    config = load_config(Outer, "vision", [str(first), str(second)], ["rate=0.5"])
    assert (config.name, config.inner.size, config.rate) == ("second", 9, 0.5)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="must be a YAML mapping, got list"):
        load_config(Outer, "vision", [str(tmp_path / "list.yaml")])
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_config(Outer, "vision", [str(tmp_path / "bad.yaml")])
    with pytest.raises(ValueError, match="preset file does not exist"):
        load_config(Outer, "vision", [str(tmp_path / "none.yaml")])


def test_presets_are_listed_per_task_and_unknown_names_list_them():
    assert preset_names("vision") == ["cifar10-resnet18", "digits", "fashion-mnist", "tinyimagenet-swin-t"]
    assert preset_names("tofu") == [
        "lora", "real-world-llama3-8b", "real-world-tiny", "tofu-llama2-7b", "tofu-phi15", "tofu-small", "tofu-tiny"
    ]
    assert read_preset("tofu", "tofu-tiny")["model"]["kind"] == "tiny"
    with pytest.raises(ValueError, match=r"unknown preset 'tofu-tiny'; valid: cifar10-resnet18, digits, fashion-mnist"):
        read_preset("vision", "tofu-tiny")
    with pytest.raises(ValueError, match=r"unknown task 'audio'; valid: diffusion, safety, tofu, vision"):
        preset_names("audio")


def test_describe_lists_every_key_with_its_help():
    keys = {k.key: k for k in describe(Outer)}
    assert set(keys) == {"name", "rate", "flag", "items", "maybe", "inner", "inner.size", "inner.betas", "per"}
    assert keys["inner.size"].help == "a size" and keys["inner.size"].default == 3
    assert keys["inner"].type == "section" and keys["maybe"].type == "int or null"
    assert to_dict(Outer())["inner"] == {"size": 3, "betas": [0.9, 0.99]}


def test_every_field_of_every_task_config_has_help():
    from dualoptim.llm.config import TofuConfig
    from dualoptim.vision.config import VisionConfig

    for cls in (VisionConfig, TofuConfig):
        missing = [k.key for k in describe(cls) if not k.help]
        assert not missing, f"{cls.__name__} keys without help: {missing}"
