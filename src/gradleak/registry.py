"""Name → factory registries read by the CLI, the docs table and the tests.

Example:
    >>> from gradleak.registry import ATTACKS, create_attack
    >>> "ig" in list_attacks()
    True
    >>> attack = create_attack("ig", steps=10)
    >>> attack.steps
    10
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from gradleak.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to factories (classes or functions) of one kind.

    Args:
        kind: what the entries are, used in error messages ("attack", "dataset", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers ``factory`` under ``name`` (names are unique)."""

        def wrap(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return wrap

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``; unknown names list the valid ones."""
        _load_builtins()
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)
        return self._entries[name]

    def create(self, name: str, /, **kwargs: Any) -> T:
        """Build the entry ``name`` with keyword arguments checked against its signature."""
        factory = self.get(name)
        check_kwargs(factory, kwargs, f"{self.kind} {name!r}")
        return factory(**kwargs)

    def names(self) -> list[str]:
        """Sorted registered names."""
        _load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        _load_builtins()
        return name in self._entries


def check_kwargs(factory: Callable[..., Any], kwargs: dict[str, Any], what: str) -> None:
    """Raise :class:`ConfigError` listing every keyword that ``factory`` does not accept."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{what} has no option(s) {', '.join(unknown)}; valid options: {', '.join(accepted)}"
        )


ATTACKS: Registry[Any] = Registry("attack")
DEFENSES: Registry[Any] = Registry("defense")
DATASETS: Registry[Any] = Registry("dataset")
MODELS: Registry[Any] = Registry("model")
LABEL_METHODS: Registry[Any] = Registry("label method")

register_attack = ATTACKS.register
register_defense = DEFENSES.register
register_dataset = DATASETS.register
register_model = MODELS.register
register_label_method = LABEL_METHODS.register

_LOADED = False


def _load_builtins() -> None:
    """Import the built-in modules once so their ``@register_*`` decorators run."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import gradleak.attacks  # noqa: F401
    import gradleak.data  # noqa: F401
    import gradleak.defenses  # noqa: F401
    import gradleak.models  # noqa: F401


def create_attack(name: str, /, **kwargs: Any) -> Any:
    """Build a registered attack by name. Example: ``create_attack("ig", steps=100)``."""
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
