"""The typed options of every attack, defense, model and dataset: one check for the CLI, grids and the API.

A factory's options are read from its signature: the annotation (or the default's type) says
what a value must be, and :data:`RANGES` (or the factory's own ``option_ranges``) says which
numbers are allowed. :func:`check_options` refuses unknown names, wrong types (a float for an
integer, text for a number, NaN or infinity anywhere) and out-of-range numbers, all at once, in
one :class:`~gradleak.core.errors.ConfigError` that names each option, what it expects and a fix.

Example:
    >>> def demo(*, steps: int = 10, lr: float = 0.1, mode: str = "a"): ...
    >>> check_options(demo, {"steps": 5, "lr": 1}, "attack 'demo'")
    {'steps': 5, 'lr': 1}
    >>> try:
    ...     check_options(demo, {"steps": "abc", "lr": float("nan")}, "attack 'demo'")
    ... except ConfigError as err:
    ...     print(str(err).replace("; ", "\\n"))
    attack 'demo': steps must be an integer, got 'abc' — e.g. steps=10 (the default)
    lr must be a finite number, got nan — e.g. lr=0.1 (the default)
"""

from __future__ import annotations

import collections.abc as cabc
import functools
import inspect
import math
import numbers
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradleak.core.errors import ConfigError
from gradleak.core.limits import MAX_SEED, MAX_STEPS


@dataclass(frozen=True)
class Range:
    """Allowed numbers: ``low`` (excluded when ``low_open``) up to ``high``; ``None`` = unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def problem(self, value: float) -> str | None:
        """Why ``value`` is outside the range (None when inside)."""
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return self.describe()
        if self.high is not None and value > self.high:
            return self.describe()
        return None

    def describe(self) -> str:
        """``> 0``, ``>= 1`` or ``between 1 and 1024``."""
        if self.low is not None and self.high is not None and not self.low_open:
            return f"between {_num(self.low)} and {_num(self.high)}"
        low = f"{'>' if self.low_open else '>='} {_num(self.low)}" if self.low is not None else ""
        high = f"<= {_num(self.high)}" if self.high is not None else ""
        return " and ".join(p for p in (low, high) if p)


def _num(x: float) -> str:
    return "2**62" if x == MAX_SEED else f"{x:g}" if isinstance(x, float) else f"{x}"


WEIGHT = Range(0, 1e6)
RANGES: dict[str, Range] = {
    "steps": Range(1, MAX_STEPS), "restarts": Range(1, 1024), "seeds": Range(1, 1024),
    "max_iter": Range(1, 10_000), "seed": Range(0, MAX_SEED), "lr": Range(0, 1e6, low_open=True),
    "tv": WEIGHT, "tv_late": WEIGHT, "bn": WEIGHT, "l2": WEIGHT, "group": WEIGHT, "kl": WEIGHT,
    "population": Range(1, 100_000), "bo_batch": Range(1, 10_000), "bo_init": Range(1, 1_000_000),
    "map_steps": Range(0, MAX_STEPS), "group_every": Range(1, MAX_STEPS), "clients": Range(1, 10_000),
    "width": Range(1, 1_000_000), "widths": Range(1, 10_000_000), "std": Range(0, None, low_open=True),
    "size": Range(1, 4096), "per_class": Range(1, 100_000), "sigma": Range(0, None), "scale": Range(0, None),
    "alpha": Range(0, None), "eps": Range(0, None, low_open=True), "bits": Range(1, 16),
}
"""Ranges shared by every factory with an option of that name (a factory's ``option_ranges`` wins)."""


@dataclass(frozen=True)
class Option:
    """One keyword option: its name, type annotation (``Any`` when unknown) and default."""

    name: str
    hint: Any
    default: Any


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an annotation naming something not importable: resolve one by one
        pass
    module = sys.modules.get(getattr(target, "__module__", ""), None)
    namespace = dict(vars(module)) if module else {}
    out = {}
    for name, text in getattr(target, "__annotations__", {}).items():
        try:
            out[name] = eval(text, namespace) if isinstance(text, str) else text  # noqa: S307 - own annotations
        except Exception:  # noqa: BLE001
            out[name] = Any
    return out


@functools.lru_cache(maxsize=512)
def schema(factory: Callable[..., Any]) -> tuple[dict[str, Option], bool]:
    """``({name: Option}, takes_any_keyword)`` of a factory (a class's ``__init__`` or a function)."""
    params = inspect.signature(factory).parameters
    hints = _hints(factory)
    options = {}
    for name, p in params.items():
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        hint = hints.get(name, Any)
        default = None if p.default is inspect.Parameter.empty else p.default
        if hint is Any and default is not None:
            hint = type(default)
        options[name] = Option(name, hint, default)
    return options, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def describe(hint: Any) -> str:
    """What a value of type ``hint`` is, in words (``an integer``, ``a list of numbers``, ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or none" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple, cabc.Sequence, typing.Sequence):
        elem = args[0] if args else Any
        return "a list of " + {int: "integers", float: "numbers", str: "texts"}.get(elem, "values") + " (a,b,...)"
    simple = {bool: "true or false", int: "an integer", float: "a finite number", str: "text", Path: "a path"}
    if hint in simple:
        return simple[hint]
    if origin in (dict, cabc.Mapping, typing.Mapping):
        return "a mapping"
    if origin is cabc.Callable:
        return "a function"
    return f"a {getattr(hint, '__name__', str(hint))}"


def _conform(value: Any, hint: Any, coerce: bool) -> tuple[bool, Any]:
    """``(True, value as the factory should get it)`` when ``value`` fits ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return True, value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return type(None) in args, None
        if coerce and isinstance(value, str) and value.lower() == "none" and type(None) in args:
            return True, None  # 'none' is text where None is not allowed (gifd's label_map="none")
        for strict in (False, True) if coerce else (False,):
            for a in args:
                ok, out = _conform(value, a, strict)
                if ok:
                    return True, out
        return False, None
    if hint is type(None):
        return value is None, None
    if origin is typing.Literal:
        return value in args, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return ok, int(value) if ok else None
    if hint is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return ok, (value if isinstance(value, (int, float)) else float(value)) if ok else None
    if hint is str:
        return isinstance(value, str), value
    if hint in (Path, os.PathLike):
        return isinstance(value, (str, os.PathLike)), value
    if origin in (list, tuple, cabc.Sequence, typing.Sequence):
        elems = [a for a in args if a is not Ellipsis] or [Any]
        if isinstance(value, (list, tuple)):
            fitted = [_conform(v, elems[0] if len(elems) == 1 else elems[min(i, len(elems) - 1)], coerce)
                      for i, v in enumerate(value)]
            return all(ok for ok, _ in fitted), tuple(v for _, v in fitted)
        if coerce and not isinstance(value, (str, bytes)):
            ok, out = _conform(value, elems[0], coerce)
            return ok, (out,) if ok else None
        return False, None
    if origin in (dict, cabc.Mapping, typing.Mapping) or hint in (dict, Mapping):
        return isinstance(value, cabc.Mapping), value
    if origin is cabc.Callable or hint is cabc.Callable:
        return callable(value), value
    if isinstance(hint, type) and not getattr(hint, "_is_protocol", False):
        return isinstance(value, hint), value
    return True, value


def _numbers(value: Any) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return [value] if isinstance(value, numbers.Real) and not isinstance(value, bool) else []


def _example(option: Option) -> str:
    if option.default is None or callable(option.default) and not isinstance(option.default, type):
        return ""
    default = option.default
    shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default).lower() \
        if isinstance(default, bool) else str(default)
    return f" — e.g. {option.name}={shown} (the default)"


def check_options(factory: Callable[..., Any], options: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Check ``options`` against ``factory``'s signature and ranges; return them as the factory takes them.

    Raises:
        ConfigError: listing every unknown name, wrong type, non-finite or out-of-range value.
    """
    known, any_keyword = schema(factory)
    problems: list[str] = []
    unknown = sorted(set(options) - set(known), key=str)
    head = ""
    if unknown and not any_keyword:
        valid = f"valid options: {', '.join(known)}" if known else "it takes no options"
        head = f"{what} has no option(s) {', '.join(map(str, unknown))}; {valid}"
    ranges = {**RANGES, **getattr(factory, "option_ranges", {})}
    out: dict[str, Any] = {}
    for name, value in options.items():
        option = known.get(name)
        if option is None:
            out[name] = value
            continue
        ok, fitted = _conform(value, option.hint, coerce=True)
        if not ok:
            problems.append(f"{name} must be {describe(option.hint)}, got {value!r}{_float_hint(value, option)}"
                            f"{_example(option)}")
            continue
        nums = _numbers(fitted)
        bad = [x for x in nums if not math.isfinite(x)]
        if bad:
            problems.append(f"{name} must be a finite number, got {value!r}{_example(option)}")
            continue
        limits = ranges.get(name)
        wrong = [x for x in nums if limits is not None and limits.problem(x)]
        if wrong and limits is not None:
            problems.append(f"{name} must be {limits.describe()}, got {wrong[0]!r}{_example(option)}")
            continue
        out[name] = fitted
    if head or problems:
        raise ConfigError("; ".join([head] * bool(head) + [f"{what}: " + "; ".join(problems)] * bool(problems)))
    return out


def _float_hint(value: Any, option: Option) -> str:
    if isinstance(value, float) and "integer" in describe(option.hint):
        return ", a decimal number: write a whole number"
    return ""
