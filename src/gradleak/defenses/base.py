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

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.options import parse_value
from gradleak.core.registry import DEFENSES
from gradleak.core.types import ClientUpdate, GradList, TrialTransform


class Defense(ABC):
    """Base of update-transforming defenses.

    Subclasses set ``name`` and implement ``__call__``; ``spec`` is recorded in the update's
    ``defenses`` so an adaptive attacker knows what was applied, and :meth:`trial_transform`
    is that attacker's copy of the defense's deterministic part.

    Capabilities (class attributes, read by the pipeline and the CLI, never guessed):

    * ``takes_seed`` — the constructor takes ``seed=`` (the defense draws random numbers);
    * ``trains`` — the defense hooks into local training (a ``TrainingDefense``: DP-SGD, MixUp);
    * ``needs_inputs`` — it runs on the client with the client's inputs (Soteria).
    """

    name: ClassVar[str] = "defense"
    takes_seed: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    needs_inputs: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None) -> ClientUpdate:
        """Return the defended update (the input is never modified)."""

    def trial_transform(self, observed: GradList, names: list[str], model: nn.Module) -> TrialTransform | None:
        """The adaptive attacker's copy of this defense, applied to trial gradients; ``None`` if none.

        Args:
            observed: the defended gradient the server saw (``model.named_parameters()`` order).
            names: the parameter names, in that order.
            model: the attacked model.

        Returns:
            a function on gradient lists with a leading restart dimension, or ``None`` when the
            defense has no deterministic part to copy (noise, DP-SGD, MixUp, aggregation).
        """
        return None

    @property
    def spec(self) -> str:
        """``NAME:key=value,...`` of this defense's public settings."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(vars(self).items()) if not k.startswith("_"))
        return f"{self.name}:{opts}" if opts else self.name


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``NAME:key=value,...`` into the name and typed options."""
    if not isinstance(spec, str):
        raise ConfigError(f"a defense spec must be text NAME:key=value,..., got {spec!r}; a chain is a list "
                          "of specs, e.g. ['clip:norm=1', 'noise:sigma=0.01']")
    name, _, rest = spec.partition(":")
    if not name:
        raise ConfigError(f"empty defense name in {spec!r}; write NAME:key=value,...")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"defense option {item!r} in {spec!r} is not key=value")
        if key.strip() in options:
            raise ConfigError(f"defense option {key.strip()} is given twice in {spec!r}; keep one")
        options[key.strip()] = parse_value(val.strip())
    return name.strip(), options


def build_defenses(specs: list[str] | tuple[str, ...], *, seed: int = 0) -> list[Any]:
    """Build defenses from specs; a ``seed`` option is filled in when the defense takes one."""
    built = []
    for i, spec in enumerate(specs):
        name, options = parse_spec(spec)
        factory = DEFENSES.get(name)
        if "seed" not in options and getattr(factory, "takes_seed", False):
            options["seed"] = seed + 1000 * (i + 1)
        built.append(DEFENSES.create(name, **options))
    return built
