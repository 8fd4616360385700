"""Typed ``KEY=VALUE`` option parsing shared by the CLI, defense specs and grid files.

Example:
    >>> parse_value("0.1"), parse_value("3"), parse_value("true"), parse_value("cosine")
    (0.1, 3, True, 'cosine')
    >>> parse_pairs(["steps=10", "widths=100,50"], "attack parameter")
    {'steps': 10, 'widths': (100, 50)}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradleak.core.errors import ConfigError


def parse_value(text: str) -> Any:
    """``true``/``false`` → bool, then int, then float, else the string itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, Any]:
    """``["k=v", ...]`` → typed dict (ints, floats, booleans, comma lists of numbers, strings)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, val = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"{what} {pair!r} is not KEY=VALUE")
        if key in out:
            raise ConfigError(f"{what} {key} is given twice ({key}={out[key]!r} and {pair}); keep one")
        parts = val.split(",")
        out[key] = tuple(parse_value(p) for p in parts) if len(parts) > 1 else parse_value(val)
    return out
