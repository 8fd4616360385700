"""Typed options read from signatures: wrong types, NaN, floats for integers and ranges refused in one line."""

from __future__ import annotations

import re

import pytest

from gradleak.core.errors import ConfigError
from gradleak.core.registry import ATTACKS, DEFENSES, MODELS, create_attack, register_attack
from gradleak.core.schema import check_options, schema


def test_a_wrong_type_names_the_option_what_it_expects_and_a_fix():
    with pytest.raises(ConfigError) as info:
        create_attack("ig", steps="abc")
    assert str(info.value) == "attack 'ig': steps must be an integer, got 'abc' — e.g. steps=1000 (the default)"


@pytest.mark.parametrize(("options", "needle"), [
    ({"restarts": 1e9}, "restarts must be an integer, got 1000000000.0, a decimal number"),
    ({"restarts": 10**9}, "restarts must be between 1 and 1024, got 1000000000"),
    ({"tv": float("nan")}, "tv must be a finite number, got nan"),
    ({"lr": float("inf")}, "lr must be a finite number, got inf"),
    ({"lr": 0}, "lr must be > 0"),
    ({"signed": "yes"}, "signed must be true or false"),
    ({"seed": -1}, "seed must be between 0 and 2**62"),
])
def test_values_out_of_kind_or_range(options, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        create_attack("ig", **options)


def test_every_problem_at_once_and_unknown_names_listed():
    with pytest.raises(ConfigError) as info:
        create_attack("ig", colour="red", steps=0.5, tv="x")
    text = str(info.value)
    assert "has no option(s) colour" in text and "steps must be an integer" in text and "tv must be" in text


def test_coercions_none_and_one_element_lists():
    gifd = create_attack("gifd", stages=2, radii=1.0)
    assert tuple(gifd.stages) == (2,) and tuple(gifd.radii) == (1.0,)
    assert create_attack("ggl", steps="none").steps == create_attack("ggl").steps  # "none" is None
    with pytest.raises(ConfigError, match="steps must be an integer"):
        create_attack("ig", steps="none")  # not optional


@pytest.mark.parametrize("registry", [ATTACKS, DEFENSES, MODELS], ids=lambda r: r.kind)
def test_defaults_and_tiny_presets_pass_their_own_schema(registry):
    for name in registry.names():
        factory = registry.get(name)
        options, _ = schema(factory)
        defaults = {k: o.default for k, o in options.items() if o.default is not None}
        check_options(factory, defaults, name)
        check_options(factory, getattr(factory, "presets", {}).get("tiny", {}), name)


def test_a_user_attack_with_an_unresolvable_annotation_still_checks_the_rest():
    @register_attack("schema-demo")
    class Demo:
        def __init__(self, *, steps: int = 3, prior: NotDefinedAnywhere = None) -> None:  # noqa: F821
            self.steps, self.prior = steps, prior

    try:
        assert create_attack("schema-demo", steps=4, prior=object()).steps == 4
        with pytest.raises(ConfigError, match="steps must be an integer"):
            create_attack("schema-demo", steps=4.5)
    finally:
        ATTACKS._entries.pop("schema-demo")  # registries are global: leave no trace for other tests
