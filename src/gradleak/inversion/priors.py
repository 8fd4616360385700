"""Image priors: total variation (more come with later attacks).

Example:
    >>> import torch
    >>> float(total_variation(torch.zeros(1, 2, 1, 4, 4))[0])
    0.0
"""

from __future__ import annotations

import torch


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV, mean absolute neighbour difference, per leading index.

    Args:
        x: ``(R, B, C, H, W)``; returns ``(R,)`` (mean over the batch of each restart).
    """
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(-3, -2, -1))
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(-3, -2, -1))
    return (dx + dy).mean(dim=-1)
