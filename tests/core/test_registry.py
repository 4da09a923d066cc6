import dataclasses

import pytest

from dualoptim.registry import Registry


def _methods() -> Registry[type]:
    methods = Registry[type]("method")

    @methods.register("GA")
    @dataclasses.dataclass
    class GradientAscent:
        scale: float = 1.0
        cached: list = dataclasses.field(init=False, default_factory=list)

    return methods


def test_build_makes_the_registered_dataclass_with_its_options():
    made = _methods().build("GA", {"scale": 0.5})
    assert type(made).__name__ == "GradientAscent" and made.scale == 0.5
    assert _methods().build("GA").scale == 1.0


def test_build_rejects_unknown_options_and_names_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option 'beta' for method GA; valid: scale$"):
        _methods().build("GA", {"beta": 1, "scale": 2})  # 'cached' is no init field, so not offered
    with pytest.raises(ValueError, match=r"unknown method 'SGD'; valid: GA"):
        _methods().build("SGD")


def test_a_name_registers_once():
    methods = _methods()
    with pytest.raises(ValueError, match=r"method 'GA' is already registered"):
        methods.register("GA")(object)
