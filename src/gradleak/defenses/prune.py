"""Gradient sparsification: per-tensor percentile pruning (``prune``) and global top-k (``topk``).

GGL (Li et al., CVPR 2022, arXiv 2203.15696) zeroes, per tensor, the entries whose ``|g|``
is below the p-th percentile of ``|g|`` (p = 90 % in Table 3). Here exactly
``round(ratio · numel)`` smallest-magnitude entries are zeroed (ties broken by position), so
the stated fraction is met exactly. ``topk`` keeps the largest ``1 − ratio`` fraction of
entries over the whole update (Deep Gradient Compression style). An adaptive attacker
multiplies its trial gradient by the observed non-zero mask.

Example:
    >>> import torch
    >>> from gradleak.types import ClientUpdate
    >>> update = ClientUpdate.from_gradients({"w": torch.arange(1.0, 11.0)}, num_examples=1)
    >>> Prune(ratio=0.9)(update).tensors["w"].tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0]
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradleak.defenses.base import Defense
from gradleak.errors import ConfigError
from gradleak.registry import register_defense
from gradleak.types import ClientUpdate


def check_ratio(what: str, ratio: float) -> float:
    """Return ``ratio`` as a float, or raise :class:`ConfigError` unless ``0 <= ratio < 1``."""
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and 0 <= ratio < 1):
        raise ConfigError(f"{what}: ratio must be in [0, 1) (the fraction removed), got {ratio!r}")
    return float(ratio)


def smallest_mask(values: torch.Tensor, ratio: float) -> torch.Tensor:
    """A boolean mask (same shape) that is ``False`` on the ``round(ratio·numel)`` smallest values."""
    flat = values.reshape(-1)
    k = int(round(ratio * flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if k > 0:
        keep[torch.argsort(flat, stable=True)[:k]] = False
    return keep.reshape(values.shape)


@register_defense("prune")
class Prune(Defense):
    """Zero the ``ratio`` fraction of smallest-magnitude entries in each tensor.

    Args:
        ratio: fraction of entries zeroed per tensor, in ``[0, 1)`` (GGL: 0.9).

    Raises:
        ConfigError: ``ratio`` outside ``[0, 1)``.
    """

    name = "prune"

    def __init__(self, *, ratio: float = 0.9) -> None:
        self.ratio = check_ratio("prune", ratio)

    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None) -> ClientUpdate:
        out = {n: t * smallest_mask(t.abs(), self.ratio).to(t.dtype) for n, t in update.tensors.items()}
        return update.with_tensors(out, defense=self.spec)


@register_defense("topk")
class TopK(Defense):
    """Keep only the largest ``1 − ratio`` fraction of entries (by magnitude) over the whole update.

    Args:
        ratio: fraction of all entries zeroed, in ``[0, 1)``.

    Raises:
        ConfigError: ``ratio`` outside ``[0, 1)``.
    """

    name = "topk"

    def __init__(self, *, ratio: float = 0.9) -> None:
        self.ratio = check_ratio("topk", ratio)

    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None) -> ClientUpdate:
        names = list(update.tensors)
        flat = torch.cat([update.tensors[n].reshape(-1).abs().double() for n in names])
        keep = smallest_mask(flat, self.ratio)
        out, start = {}, 0
        for n in names:
            t = update.tensors[n]
            out[n] = t * keep[start:start + t.numel()].reshape(t.shape).to(t.dtype)
            start += t.numel()
        return update.with_tensors(out, defense=self.spec)
