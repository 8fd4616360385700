"""Attack hyper-parameter presets: ``default``, ``paper``, ``tiny``, and what a run resolved.

Every attack declares ``presets`` (plain dicts of constructor options) and ``paper_sources``
(where each value of its ``paper`` preset comes from: ``[PAPER]`` the paper's text, ``[CODE]``
the authors' code, ``[ABS]`` the abstract, ``[GUESS]`` not known — our guess). The preset
``default`` is the constructor's defaults (gradleak's choice; ``default_tuned_on`` says on which
split, if any, they were chosen) and is always available.

A run's options are ``{**preset, **attack_options}``: the preset gives the base values and any
option set explicitly (``-p``, ``--steps``, a sweep's ``attack_options``/``per_attack``) wins. Not
to be confused with a sweep grid's ``[presets.NAME]`` tables, which name *experiments* (sets of
runs): a grid picks an attack preset with the option ``attack_preset``.

Example:
    >>> preset_options("ig", "tiny")
    {'steps': 3}
    >>> apply_preset("ig", "paper", {"steps": 50})["steps"], "tv" in apply_preset("ig", "paper", {})
    (50, True)
    >>> from gradleak.core.registry import create_attack
    >>> resolved_hyperparameters(create_attack("ig", steps=5))["steps"]
    5
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from gradleak.core.errors import ConfigError
from gradleak.core.jsonable import to_jsonable
from gradleak.core.registry import ATTACKS

DEFAULT = "default"
SOURCE_TAGS = ("[PAPER]", "[CODE]", "[ABS]", "[GUESS]")
_SKIP = ("transform",)


def preset_names(attack: str) -> list[str]:
    """The presets attack ``attack`` offers (``default`` first)."""
    return [DEFAULT, *[p for p in ATTACKS.get(attack).presets if p != DEFAULT]]


def preset_options(attack: str, preset: str) -> dict[str, Any]:
    """The options of ``preset`` for ``attack`` (``default``: none, the constructor's defaults)."""
    cls = ATTACKS.get(attack)
    if preset == DEFAULT:
        return {}
    if preset not in cls.presets:
        raise ConfigError(f"attack {attack!r} has no preset {preset!r}; choose one of: "
                          f"{', '.join(preset_names(attack))}")
    return dict(cls.presets[preset])


def apply_preset(attack: str, preset: str, options: dict[str, Any]) -> dict[str, Any]:
    """``{**preset_options(attack, preset), **options}``: explicit options win over the preset."""
    return {**preset_options(attack, preset), **options}


def preset_sources(attack: str, preset: str) -> dict[str, str]:
    """Where each value of ``preset`` comes from (the ``paper`` preset's ``paper_sources``)."""
    cls = ATTACKS.get(attack)
    if preset == "paper":
        return dict(cls.paper_sources)
    if preset == DEFAULT:
        return {"*": f"gradleak's defaults; {cls.default_tuned_on}"}
    return {k: "gradleak (a seconds-long smoke run)" for k in preset_options(attack, preset)}


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return type(value).__name__  # a module or object passed in (a Generator): its type


def resolved_hyperparameters(attack: Any) -> dict[str, Any]:
    """Every constructor option of a built attack with the value it holds (JSON-ready)."""
    params = inspect.signature(type(attack).__init__).parameters
    out = {}
    for name, param in params.items():
        if name == "self" or name in _SKIP or param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            continue
        if hasattr(attack, name):
            out[name] = _plain(getattr(attack, name))
    return to_jsonable(out)
