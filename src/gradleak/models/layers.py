"""Small building blocks shared by the model zoo.

Example:
    >>> import torch
    >>> Normalize(0.5, 0.5)(torch.ones(1, 1, 2, 2)).max().item()
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Fixed per-channel ``(x - mean) / std``: the first module of every model.

    Attacks optimise and report pixels in ``[0, 1]``; this module carries the model's
    normalisation, so it is part of the model rather than of the data.
    """

    def __init__(self, mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.5) -> None:
        super().__init__()
        if any(not s > 0 for s in (std if isinstance(std, Sequence) else [std])):  # no tensor: builds on meta
            raise ValueError(f"std must be positive, got {std}")
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Map normalised values back to pixel space."""
        return z * self.std + self.mean


def last_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The name and module of the last ``nn.Linear`` in registration order, or ``None``."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    return found


def has_batchnorm(model: nn.Module) -> bool:
    """Whether the model contains any BatchNorm layer."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
