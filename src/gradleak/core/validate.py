"""Checks of the values that cross into gradleak: counts, real numbers, tensors and client updates.

Each ``*_problem`` function returns why a value is wrong (or ``None``), so a caller can collect
every problem before raising one error; the ``check_*`` functions raise
:class:`~gradleak.core.errors.ConfigError` themselves.

Example:
    >>> int_problem("epochs", 1.5, low=1)
    'epochs must be an integer >= 1, got 1.5'
    >>> real_problem("lr", float("nan"), low=0, low_open=True) is not None
    True
    >>> import torch
    >>> degenerate_problem({"w": torch.zeros(3), "b": torch.zeros(2)})
    'every value of the update is zero (a degenerate update: nothing to invert)'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch

from gradleak.core.errors import ConfigError

MAX_ABS = 1e15
"""Largest magnitude accepted in an update: beyond it, squared distances overflow float32."""
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def int_problem(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> str | None:
    """Why ``value`` is not an integer in ``[low, high]`` (None when it is; bools are not integers)."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    inside = ok and (low is None or value >= low) and (high is None or value <= high)
    if inside:
        return None
    bounds = (f"between {low} and {high}" if low is not None and high is not None else
              f">= {low}" if low is not None else f"<= {high}" if high is not None else "")
    return f"{name} must be an integer{' ' + bounds if bounds else ''}, got {value!r}"


def real_problem(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> str | None:
    """Why ``value`` is not a finite real number in the range (None when it is)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high):
        return None
    bounds = [f"{'>' if low_open else '>='} {low:g}" if low is not None else "",
              f"<= {high:g}" if high is not None else ""]
    return f"{name} must be a finite number {' and '.join(b for b in bounds if b)}".rstrip() + f", got {value!r}"


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int``, or :class:`ConfigError`."""
    problem = int_problem(name, value, low=low, high=high)
    if problem:
        raise ConfigError(problem)
    return int(value)


def tensor_problem(name: str, value: Any, *, what: str, dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES,
                   kind: str = "floating-point") -> str | None:
    """Why ``value`` is not a torch tensor of one of ``dtypes``."""
    if not isinstance(value, torch.Tensor):
        hint = " (convert it with torch.as_tensor(...))" if hasattr(value, "__array__") or isinstance(
            value, (list, tuple)) else ""
        return f"{what} {name!r} is a {type(value).__module__}.{type(value).__qualname__}, not a torch.Tensor{hint}"
    if value.dtype not in dtypes:
        fix = ".float()" if kind == "floating-point" else ".long()"
        return f"{what} {name!r} has dtype {value.dtype}; it must be {kind} (convert it with {fix})"
    return None


def check_tensors(tensors: Any, what: str) -> dict[str, torch.Tensor]:
    """A mapping of names to floating-point tensors, or one :class:`ConfigError` listing every bad entry."""
    if not isinstance(tensors, Mapping):
        raise ConfigError(f"{what} tensors must be a mapping of parameter name → torch.Tensor, "
                          f"got {type(tensors).__name__}")
    if not tensors:
        raise ConfigError(f"{what} holds no tensors; pass one tensor per model parameter, keyed by name")
    problems = [f"{what} key {k!r} is not a parameter name (text)" for k in tensors if not isinstance(k, str)]
    problems += [p for k, v in tensors.items() if (p := tensor_problem(str(k), v, what=f"{what} tensor"))]
    if problems:
        raise ConfigError("; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    return dict(tensors)


def labels_problem(labels: Any, count: int | None, what: str = "labels") -> str | None:
    """Why ``labels`` is not a 1-D integer tensor of ``count`` entries, all >= 0."""
    problem = tensor_problem("labels", labels, what=what, dtypes=INT_DTYPES, kind="an integer tensor")
    if problem:
        return problem.replace(f"{what} 'labels'", what)
    if labels.dim() != 1:
        return f"{what} must be 1-D (one class per example), got shape {tuple(labels.shape)}"
    if count is not None and labels.numel() != count:
        return f"{what} has {labels.numel()} entries for {count} examples; pass one label per example"
    if labels.numel() and int(labels.min()) < 0:
        return f"{what} holds a negative class {int(labels.min())}; classes are 0..K-1"
    return None


def values_problems(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Tensors holding NaN, infinity, or magnitudes above :data:`MAX_ABS`."""
    problems = []
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            problems.append(f"{name} contains NaN or inf")
        elif t.numel() and float(t.detach().abs().max()) > MAX_ABS:
            problems.append(f"{name} holds values as large as {float(t.detach().abs().max()):.3g}, above the "
                            f"limit of {MAX_ABS:.0e} (a corrupt or mis-scaled update)")
    return problems


def degenerate_problem(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """Why an update carries no information (every value zero, or every value equal), or ``None``."""
    values = [t.detach() for t in tensors.values() if t.numel()]
    if not values:
        return "the update holds no values (a degenerate update: nothing to invert)"
    low = min(float(t.min()) for t in values)
    high = max(float(t.max()) for t in values)
    if low == high == 0:
        return "every value of the update is zero (a degenerate update: nothing to invert)"
    if low == high:
        return f"every value of the update equals {low:g} (a degenerate update: nothing to invert)"
    return None
