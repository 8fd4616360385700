"""Gradient matching with fixed labels, and the option checks optimisation attacks share.

``invert_with_labels`` is the loop of Inverting Gradients (signed Adam on batched restarts,
cosine or L2 distance + TV, optionally GradInversion's BN-statistics prior); ``ig`` and
``geng`` are thin wrappers around it.

Example:
    >>> check_optimisation_settings("demo", steps=10, lr=0.1, distance="cosine")
    >>> try:
    ...     check_optimisation_settings("demo", steps=0, tv=-1.0)
    ... except ValueError as err:
    ...     print(err)
    demo: steps must be >= 1, got 0; tv must be >= 0, got -1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.seeding import attack_generator
from gradleak.core.types import Progress, Reconstruction, TrialTransform
from gradleak.inversion.bn_prior import BNStatisticsPrior
from gradleak.inversion.gradients import trial_gradients
from gradleak.inversion.losses import DISTANCES
from gradleak.inversion.optimize import best_restart, optimise_inputs
from gradleak.inversion.priors import total_variation


def check_optimisation_settings(name: str, **values: Any) -> None:
    """Raise :class:`ConfigError` listing every out-of-range optimisation setting given."""
    problems = []
    for key in ("steps", "restarts", "seeds", "max_iter"):
        if key in values and values[key] < 1:
            problems.append(f"{key} must be >= 1, got {values[key]}")
    if "lr" in values and not values["lr"] > 0:
        problems.append(f"lr must be > 0, got {values['lr']}")
    for key in ("tv", "bn", "l2", "group"):
        if key in values and values[key] < 0:
            problems.append(f"{key} must be >= 0, got {values[key]}")
    if "distance" in values and values["distance"] not in DISTANCES:
        problems.append(f"distance must be one of {', '.join(DISTANCES)}, got {values['distance']!r}")
    if problems:
        raise ConfigError(f"{name}: " + "; ".join(problems))


def invert_with_labels(model: nn.Module, target: list[torch.Tensor], labels: torch.Tensor, *,
                       shape: Sequence[int], steps: int, lr: float, tv: float, restarts: int,
                       distance: str, signed: bool, seed: int, bn_weight: float = 0.0,
                       bn_prior: BNStatisticsPrior | None = None, transform: TrialTransform | None = None,
                       progress: Progress | None = None, info: dict | None = None) -> Reconstruction:
    """Match ``target`` with the labels held fixed; keep the restart with the lowest final loss."""
    b, r = len(labels), restarts
    y = labels.expand(r, b)
    dist = DISTANCES[distance]
    use_bn = bn_prior is not None and bn_prior.active and bn_weight > 0

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        loss = dist(trial_gradients(model, x, y, transform), target) + tv * total_variation(x)
        return loss + bn_weight * bn_prior(x) if use_bn else loss  # type: ignore[misc]

    x0 = torch.rand((r, b, *shape), generator=attack_generator(seed))
    x, history = optimise_inputs(loss_fn, x0, steps=steps, lr=lr, signed=signed, progress=progress)
    best, final = best_restart(loss_fn, x)
    details = dict(info or {})
    details.update({"best_restart": best, "final_loss": final,
                    "bn_prior": bn_prior.source if use_bn else "off"})  # type: ignore[union-attr]
    return Reconstruction(x[best], labels, history[best], info=details)
