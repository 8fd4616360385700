"""Name → factory registries read by the CLI, the sweeps and the tests.

Built-in entries come from :mod:`gradleak.core.builtins` (``"module:attribute"`` strings) and
are imported the first time they are asked for; users add their own with ``register``. A
built-in that fails to import raises :class:`BuiltinImportError` naming it, each time it is
asked for, and leaves every other entry usable (nothing is cached half-way).

Example:
    >>> from gradleak.core.registry import ATTACKS, create_attack, list_attacks
    >>> "ig" in list_attacks()
    True
    >>> attack = create_attack("ig", steps=10)
    >>> attack.steps
    10
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from gradleak.core import builtins
from gradleak.core.errors import ConfigError, UnknownNameError
from gradleak.core.schema import check_options

T = TypeVar("T")


class BuiltinImportError(ImportError):
    """A built-in registry entry whose module could not be imported (a broken installation)."""


class Registry(Generic[T]):
    """A mapping from names to factories (classes or functions) of one kind.

    Args:
        kind: what the entries are, used in error messages ("attack", "dataset", ...).
        builtin: ``name -> "module:attribute"`` entries imported on first use.
    """

    def __init__(self, kind: str, builtin: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._lazy: dict[str, str] = dict(builtin or {})
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers ``factory`` under ``name`` (names are unique)."""

        def wrap(factory: Callable[..., T]) -> Callable[..., T]:
            taken = name in self._lazy or (name in self._entries and self._entries[name] is not factory)
            if taken:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return wrap

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``; unknown names list the valid ones."""
        if name in self._entries:
            return self._entries[name]
        target = self._lazy.get(name) if isinstance(name, str) else None
        if target is None:
            raise UnknownNameError(self.kind, str(name), self.names())
        module, _, attribute = target.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as err:
            raise BuiltinImportError(f"built-in {self.kind} {name!r} could not be loaded from {target}: "
                                     f"{type(err).__name__}: {err}") from err
        self._entries[name] = factory
        return factory

    def create(self, name: str, /, **kwargs: Any) -> T:
        """Build the entry ``name`` with keyword arguments checked against its signature."""
        factory = self.get(name)
        return factory(**check_kwargs(factory, kwargs, f"{self.kind} {name!r}"))

    def names(self) -> list[str]:
        """Sorted registered names (built-in and user-registered)."""
        return sorted(set(self._lazy) | set(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._lazy or name in self._entries


def check_kwargs(factory: Callable[..., Any], kwargs: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Check ``kwargs`` against ``factory``'s typed options (:func:`gradleak.core.schema.check_options`):
    unknown names, wrong types, NaN or infinity and out-of-range numbers raise one :class:`ConfigError`;
    returns the options as the factory takes them (``"none"`` → ``None``, a number → a 1-tuple for a list)."""
    return check_options(factory, kwargs, what)


ATTACKS: Registry[Any] = Registry("attack", builtins.ATTACKS)
DEFENSES: Registry[Any] = Registry("defense", builtins.DEFENSES)
DATASETS: Registry[Any] = Registry("dataset", builtins.DATASETS)
MODELS: Registry[Any] = Registry("model", builtins.MODELS)
LABEL_METHODS: Registry[Any] = Registry("label method", builtins.LABEL_METHODS)

register_attack = ATTACKS.register
register_defense = DEFENSES.register
register_dataset = DATASETS.register
register_model = MODELS.register
register_label_method = LABEL_METHODS.register


def create_attack(name: str, /, *, preset: str = "default", **kwargs: Any) -> Any:
    """Build a registered attack by name from one of its ``presets`` (``default``: the constructor's
    defaults); options given here override the preset's.

    Example: ``create_attack("ig", steps=100)``, ``create_attack("ggl", preset="paper", restarts=2)``.
    """
    if preset != "default":
        presets = getattr(ATTACKS.get(name), "presets", {})
        if preset not in presets:
            raise ConfigError(f"attack {name!r} has no preset {preset!r}; choose one of: "
                              f"{', '.join(['default', *presets])}")
        kwargs = {**presets[preset], **kwargs}
    return ATTACKS.create(name, **kwargs)


def create_defense(name: str, /, **kwargs: Any) -> Any:
    """Build a registered defense by name. Example: ``create_defense("noise", sigma=0.1)``."""
    return DEFENSES.create(name, **kwargs)


def list_attacks() -> list[str]:
    """Names of the registered attacks."""
    return ATTACKS.names()


def list_defenses() -> list[str]:
    """Names of the registered defenses."""
    return DEFENSES.names()


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


def list_models() -> list[str]:
    """Names of the registered models."""
    return MODELS.names()
