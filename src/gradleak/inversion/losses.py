"""Gradient-matching distances over lists of tensors with a leading restart dimension.

Example:
    >>> import torch
    >>> g = [torch.ones(3), torch.ones(2, 2)]
    >>> trial = [t[None] * 2 for t in g]          # R = 1, same direction
    >>> float(cosine_distance(trial, g)[0]) < 1e-6
    True
    >>> float(l2_distance(trial, g)[0])
    7.0
"""

from __future__ import annotations

import torch

from gradleak.core.types import GradList


def _flat(t: torch.Tensor, r: int) -> torch.Tensor:
    return t.reshape(r, -1)


def l2_distance(trial: GradList, target: GradList, mean_over_tensors: bool = False) -> torch.Tensor:
    """``Σ_layers ‖g̃ − g‖²`` per restart (GGL divides by the number of tensors: ``mean_over_tensors``)."""
    r = trial[0].shape[0]
    total = sum(((_flat(a, r) - b.reshape(1, -1)) ** 2).sum(1) for a, b in zip(trial, target))
    return total / len(trial) if mean_over_tensors else total  # type: ignore[return-value]


def cosine_distance(trial: GradList, target: GradList, eps: float = 1e-12) -> torch.Tensor:
    """``1 − <g̃, g> / (‖g̃‖ ‖g‖)`` over all tensors jointly, per restart (Inverting Gradients)."""
    r = trial[0].shape[0]
    dot = sum((_flat(a, r) * b.reshape(1, -1)).sum(1) for a, b in zip(trial, target))
    n_trial = sum((_flat(a, r) ** 2).sum(1) for a in trial)
    n_target = sum((b ** 2).sum() for b in target)
    return 1 - dot / (torch.sqrt(n_trial * n_target) + eps)  # type: ignore[operator]


DISTANCES = {"l2": l2_distance, "cosine": cosine_distance}
