"""Registries: built-ins declared in one table, imported on first use, failures never half-loaded."""

from __future__ import annotations

import sys

import pytest

from gradleak.core import builtins
from gradleak.core.errors import UnknownNameError
from gradleak.core.registry import ATTACKS, BuiltinImportError, Registry


def test_every_builtin_is_declared_once_and_resolves():
    for kind, table in builtins.BUILTINS.items():
        registry = Registry(kind, table)
        assert registry.names() == sorted(table)
        for name in table:
            assert callable(registry.get(name)), (kind, name)


def test_listing_names_imports_no_attack_module():
    fresh = Registry("attack", builtins.ATTACKS)
    before = {m for m in sys.modules if m.startswith("gradleak.attacks.")}
    assert "ig" in fresh.names() and "ig" in fresh
    assert {m for m in sys.modules if m.startswith("gradleak.attacks.")} == before


def test_a_failing_builtin_raises_every_time_and_leaves_the_rest_usable():
    registry = Registry("attack", {"broken": "gradleak.attacks.no_such_module:Nothing", "ig": builtins.ATTACKS["ig"]})
    for _ in range(2):
        with pytest.raises(BuiltinImportError, match="built-in attack 'broken' could not be loaded"):
            registry.get("broken")
    assert registry.get("ig").name == "ig"
    assert "broken" in registry.names()
    with pytest.raises(UnknownNameError, match="choose one of: broken, ig"):
        registry.get("nope")


def test_user_registration_and_name_clash():
    registry = Registry("attack", {"ig": builtins.ATTACKS["ig"]})

    @registry.register("mine")
    class Mine:
        pass

    assert registry.get("mine") is Mine and registry.names() == ["ig", "mine"]
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("ig")(Mine)
    assert ATTACKS.get("ig") is not Mine
