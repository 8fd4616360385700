"""The defense contract and ``NAME:key=value,...`` specs.

A defense is a callable ``defense(update, *, model=None) -> ClientUpdate``, pure apart from
a seeded generator for its randomness; a list of them applies in order.

Example:
    >>> parse_spec("noise:sigma=0.1,kind=gaussian")
    ('noise', {'sigma': 0.1, 'kind': 'gaussian'})
    >>> parse_spec("prune")
    ('prune', {})
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any

from torch import nn

from gradleak.errors import ConfigError
from gradleak.registry import DEFENSES
from gradleak.types import ClientUpdate


class Defense(ABC):
    """Base of update-transforming defenses.

    Subclasses set ``name`` and implement ``__call__``; ``spec`` is recorded in the update's
    ``defenses`` so an adaptive attacker knows what was applied.
    """

    name = "defense"

    @abstractmethod
    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None) -> ClientUpdate:
        """Return the defended update (the input is never modified)."""

    @property
    def spec(self) -> str:
        """``NAME:key=value,...`` of this defense's public settings."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(vars(self).items()) if not k.startswith("_"))
        return f"{self.name}:{opts}" if opts else self.name


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``NAME:key=value,...`` into the name and typed options."""
    name, _, rest = spec.partition(":")
    if not name:
        raise ConfigError(f"empty defense name in {spec!r}; write NAME:key=value,...")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"defense option {item!r} in {spec!r} is not key=value")
        options[key.strip()] = _value(val.strip())
    return name.strip(), options


def build_defenses(specs: list[str] | tuple[str, ...], *, seed: int = 0) -> list[Any]:
    """Build defenses from specs; a ``seed`` option is filled in when the defense takes one."""
    built = []
    for i, spec in enumerate(specs):
        name, options = parse_spec(spec)
        factory = DEFENSES.get(name)
        if "seed" not in options and "seed" in inspect.signature(factory).parameters:
            options["seed"] = seed + 1000 * (i + 1)
        built.append(DEFENSES.create(name, **options))
    return built
