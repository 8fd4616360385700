"""Models built by name, seed, input shape and number of classes.

Example:
    >>> from gradleak.models import build_model
    >>> m1 = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=3)
    >>> m2 = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=3)
    >>> all((a == b).all() for a, b in zip(m1.parameters(), m2.parameters()))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.limits import check_model_memory, check_pixels
from gradleak.core.registry import MODELS, check_kwargs
from gradleak.models.layers import Normalize, has_batchnorm, last_linear


def build_model(name: str, *, shape: Sequence[int], num_classes: int, seed: int,
                **options: Any) -> nn.Module:
    """Build a registered model with its parameters drawn from ``seed`` (global RNG untouched)."""
    factory = MODELS.get(name)
    options = check_kwargs(factory, {"shape": shape, "num_classes": num_classes, **options}, f"model {name!r}")
    options = {k: v for k, v in options.items() if k not in ("shape", "num_classes")}
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input shape must be (C, H, W) with positive sizes, got {tuple(shape)}")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    check_model_size(name, shape=shape, num_classes=num_classes, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(shape=tuple(shape), num_classes=num_classes, **options)
    return model


def check_model_size(name: str, *, shape: Sequence[int], num_classes: int, **options: Any) -> int | None:
    """Build the model on the ``meta`` device (no memory, no data) and refuse it when it cannot be
    built with these options or would not fit in the free memory; returns its number of values
    (``None`` for a model that cannot be built on ``meta``: it is then only checked when built).

    Example:
        >>> check_model_size("mlp", shape=(1, 8, 8), num_classes=10, widths=(10,))  # and Normalize's 2
        762
    """
    check_pixels(shape[1], shape[2], f"the input shape {tuple(shape)}")
    factory = MODELS.get(name)
    try:
        with torch.device("meta"):
            model = factory(shape=tuple(shape), num_classes=num_classes, **options)
    except (RuntimeError, ValueError, TypeError, IndexError, ZeroDivisionError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if "meta" in first:  # a user's model that computes with tensors while it is built: no dry build
            return None
        raise ConfigError(f"model {name!r} cannot be built for inputs {tuple(shape)} and {num_classes} classes "
                          f"with options {options} ({first[:200]}); change the model options") from None
    tensors = [*model.parameters(), *model.buffers()]
    numel = sum(t.numel() for t in tensors)
    check_model_memory(numel, max((t.element_size() for t in tensors), default=4), f"model {name!r}")
    return numel


__all__ = ["Normalize", "build_model", "check_model_size", "has_batchnorm", "last_linear"]
