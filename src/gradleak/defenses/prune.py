"""Gradient sparsification: per-tensor percentile pruning (``prune``) and global top-k (``topk``).

GGL (Li et al., CVPR 2022, arXiv 2203.15696) zeroes, per tensor, the entries whose ``|g|``
is below the p-th percentile of ``|g|`` (p = 90 % in Table 3). Here exactly
``round(ratio · numel)`` smallest-magnitude entries are zeroed (ties broken by position), so
the stated fraction is met exactly. ``topk`` keeps the largest ``1 − ratio`` fraction of
entries over the whole update (Deep Gradient Compression style).

The adaptive attacker's copy (:meth:`Prune.trial_transform`) is GGL's and GIFD's: it prunes
its *own* trial gradient at the same ratio (GGL's code estimates the ratio from the observed
share of zeros and prunes each trial tensor at that percentile; here the ratio the client
recorded is used, which is the same number when no later defense filled the zeros in). The
stronger variant, multiplying the trial gradient by the *observed* non-zero mask, is not in
either paper: it is gradleak's, named ``observed-mask`` (:meth:`Prune.observed_mask_transform`,
``--adaptive observed-mask``); it tells the attacker which entries of the true gradient are
large, information the papers' attacker does not use.

Example:
    >>> import torch
    >>> from gradleak.core.types import ClientUpdate, GradList, TrialTransform
    >>> update = ClientUpdate.from_gradients({"w": torch.arange(1.0, 11.0)}, num_examples=1)
    >>> Prune(ratio=0.9)(update).tensors["w"].tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0]
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.types import ClientUpdate, GradList, TrialTransform
from gradleak.defenses.base import Defense


def check_ratio(what: str, ratio: float) -> float:
    """Return ``ratio`` as a float, or raise :class:`ConfigError` unless ``0 <= ratio < 1``."""
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and 0 <= ratio < 1):
        raise ConfigError(f"{what}: ratio must be in [0, 1) (the fraction removed), got {ratio!r}")
    return float(ratio)


def smallest_mask(values: torch.Tensor, ratio: float) -> torch.Tensor:
    """A boolean mask (same shape) that is ``False`` on the ``round(ratio·numel)`` smallest values."""
    flat = values.reshape(-1)
    k = int(round(ratio * flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        keep[torch.argsort(flat, stable=True)[:k]] = False
    return keep.reshape(values.shape)


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

    def trial_transform(self, observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
        """GGL's adaptive copy: prune each restart's trial gradient itself at ``ratio``, per tensor."""
        return repruning_transform(self.ratio, global_k=False)

    def observed_mask_transform(self, observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
        """gradleak's stronger variant: multiply by the observed non-zero mask (re-prune when a
        later defense filled the zeros in)."""
        return pruning_transform(observed, self.ratio, global_k=False)


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

    def trial_transform(self, observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
        """As :meth:`Prune.trial_transform`, keeping the top ``1 − ratio`` of the whole trial gradient."""
        return repruning_transform(self.ratio, global_k=True)

    def observed_mask_transform(self, observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
        """As :meth:`Prune.observed_mask_transform`, re-pruning over the whole trial gradient."""
        return pruning_transform(observed, self.ratio, global_k=True)


def _batched_keep(flat: torch.Tensor, ratio: float) -> torch.Tensor:
    """Per row of ``flat`` (R, n): ``False`` on the ``round(ratio·n)`` smallest values (ties by position)."""
    k = int(round(ratio * flat.shape[1]))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        keep.scatter_(1, torch.argsort(flat, dim=1, stable=True)[:, :k], False)
    return keep


def repruning_transform(ratio: float, *, global_k: bool) -> TrialTransform:
    """Prune every restart's trial gradient itself at ``ratio``: per tensor (``prune``) or over
    the whole gradient (``topk``); gradients flow through the kept entries.

    Example:
        >>> g = [torch.tensor([[1.0, -3.0, 2.0, 0.5]])]
        >>> repruning_transform(0.5, global_k=False)(g)[0].tolist()
        [[0.0, -3.0, 2.0, 0.0]]
    """

    def prune(grads: GradList) -> GradList:
        if not global_k:
            return [g * _batched_keep(g.detach().abs().reshape(g.shape[0], -1), ratio).reshape(g.shape).to(g.dtype)
                    for g in grads]
        flat = _flat_magnitudes(grads)
        keep = _batched_keep(flat, ratio)
        return _masked_by_rows(grads, keep)
    return prune


def pruning_transform(observed: GradList, ratio: float, *, global_k: bool) -> TrialTransform:
    """The ``observed-mask`` copy of ``prune`` (per tensor) or ``topk`` (``global_k``) at ``ratio``."""
    masks = [(o != 0).to(o.dtype) for o in observed]
    zeros = sum(int((o == 0).sum()) for o in observed) / sum(o.numel() for o in observed)
    filled = zeros < 0.5 * ratio  # a later defense (e.g. noise) filled the zeros in

    def prune(grads: GradList) -> GradList:
        if not filled:
            return [g * m for g, m in zip(grads, masks, strict=True)]
        if not global_k:  # prune the trial itself, the same way, per tensor
            return [g * torch.stack([smallest_mask(gi.detach().abs(), ratio) for gi in g]).to(g.dtype)
                    for g in grads]
        flat = _flat_magnitudes(grads)
        keep = torch.stack([smallest_mask(row, ratio) for row in flat])
        return _masked_by_rows(grads, keep)
    return prune


def _flat_magnitudes(grads: GradList) -> torch.Tensor:
    """Each trial row's entries over every tensor, as one ``(rows, total)`` matrix of magnitudes."""
    return torch.cat([g.detach().reshape(g.shape[0], -1).abs() for g in grads], dim=1)


def _masked_by_rows(grads: GradList, keep: torch.Tensor) -> GradList:
    """``grads`` times the ``(rows, total)`` mask ``keep``, split back into the tensors' shapes."""
    out, start = [], 0
    for g in grads:
        size = g[0].numel()
        out.append(g * keep[:, start:start + size].reshape(g.shape).to(g.dtype))
        start += size
    return out
