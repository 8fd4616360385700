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
from gradleak.core.registry import MODELS, check_kwargs
from gradleak.models.layers import Normalize, has_batchnorm, last_linear


def build_model(name: str, *, shape: Sequence[int], num_classes: int, seed: int,
                **options: Any) -> nn.Module:
    """Build a registered model with its parameters drawn from ``seed`` (global RNG untouched)."""
    factory = MODELS.get(name)
    check_kwargs(factory, {"shape": shape, "num_classes": num_classes, **options}, f"model {name!r}")
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input shape must be (C, H, W) with positive sizes, got {tuple(shape)}")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(shape=tuple(shape), num_classes=num_classes, **options)
    return model


__all__ = ["Normalize", "build_model", "has_batchnorm", "last_linear"]
