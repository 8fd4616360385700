"""SPEAR's direction search: batched kernels of sampled row subsets, sparsity filter, dedup.

For a layer gradient ``∂L/∂W = L R`` (``L`` is ``m × r`` with orthonormal columns), every
column of ``∂L/∂Z = L Q`` is zero on about half the rows, so ``r − 1`` rows sampled inside one
column's zero set have that column's direction ``q`` as their one-dimensional kernel. This
module samples row subsets in large batches (one batched QR per call, float64), keeps the
kernel directions whose ``L q`` is sparse enough, refines each on its own zero set and drops
duplicates up to sign. Used by :mod:`gradleak.attacks.spear` (Dimitrov et al., arXiv 2403.03945).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> G = torch.randn(60, 3, generator=g, dtype=torch.float64)
    >>> G[:30, 0] = 0; G[30:, 1] = 0; G[::2, 2] = 0          # three sparse columns
    >>> L = torch.linalg.svd(G, full_matrices=False).U
    >>> pool = Candidates(3)
    >>> tol = Tolerances(zero=1e-9, null=1e-12)
    >>> added = pool.add(*sample_directions(L, torch.ones(60, dtype=torch.bool), 2000, tol, g))
    >>> len(pool)
    3
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gradleak.attacks.spear.budget import Deadline, spent


@dataclass(frozen=True)
class Tolerances:
    """Numerical thresholds of the direction search.

    Args:
        zero: an entry of ``v = L q`` counts as zero when ``|v_j| <= zero * max|v|``.
        null: a row set has a kernel when its Gram matrix's smallest eigenvalue is at most
            ``null`` times its largest.
        tau: a direction must be zero on its ``r − 1`` defining rows plus at least ``tau`` of the
            other live rows (a generic kernel vector is zero on exactly ``r − 1``; a true one on
            its sample's whole zero set). Rows that are zero for every sample are not counted.
        gap: the second-smallest Gram eigenvalue must exceed the smallest by this factor
            (rejects 2-D kernels from rows shared by two columns).
        dedup: directions with ``|cos| > 1 - dedup`` are the same.
        leverage: every row of a true zero set is redundant (its statistical leverage within
            the set stays below this); a spurious kernel owes its rank to a few essential rows
            (leverage 1), e.g. when many neurons fire for one sample only and so share a row.
    """

    zero: float = 1e-6
    null: float = 1e-10
    tau: float = 0.1
    gap: float = 1e3
    dedup: float = 1e-6
    leverage: float = 0.95

    def min_zeros(self, live: int, r: int) -> float:
        """The zero count (over ``live`` rows) a direction in ``r`` dimensions needs."""
        return (r - 1) + max(3.0, self.tau * (live - r + 1))


def null_directions(L: torch.Tensor, masks: torch.Tensor, tol: Tolerances) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel direction of each row set, and whether it is a clean one-dimensional kernel.

    Args:
        L: ``(m, r)`` left factor.
        masks: ``(k, m)`` boolean row sets.

    Returns:
        unit directions ``(k, r)`` and a boolean ``(k,)``: smallest Gram eigenvalue ≈ 0, the
        second not, and no row of the set essential to its rank (leverage below ``tol.leverage``).
    """
    weights = masks.to(L.dtype)
    r = L.shape[1]
    gram = (weights @ (L[:, :, None] * L[:, None, :]).reshape(-1, r * r)).reshape(-1, r, r)
    evals, evecs = torch.linalg.eigh(gram)
    top = evals[:, -1].clamp_min(torch.finfo(L.dtype).tiny)
    low = evals[:, 0].clamp_min(0)
    second = evals[:, 1] if r > 1 else torch.full_like(top, torch.inf)
    ok = (low <= tol.null * top) & (second > 100 * tol.null * top) & (second > tol.gap * low)
    ok &= masks.sum(1) >= L.shape[1] - 1
    idx = ok.nonzero().flatten()
    if len(idx) and r > 1:                     # leverage only where the eigenvalues passed
        inv = evecs[idx, :, 1:] / evals[idx, None, 1:].clamp_min(torch.finfo(L.dtype).tiny)
        metric = inv @ evecs[idx, :, 1:].mT                     # pseudo-inverse of each Gram
        lev = ((L[None] @ metric) * L[None]).sum(-1) * weights[idx]
        ok[idx] = lev.amax(1) < tol.leverage
    return evecs[:, :, 0], ok


def predicted_masks(z_hat: torch.Tensor, alive: torch.Tensor, frac: float = 1.0) -> torch.Tensor:
    """Predicted zero sets ``Ẑ <= 0`` of approximate pre-activations ``(k, m)``, live rows only.

    With ``frac < 1`` only the most negative ``frac`` of each set is kept, which discards the
    rows closest to the ReLU boundary (the ones an approximate input most likely gets wrong).
    """
    masks = (z_hat <= 0) & alive[None]
    if frac >= 1:
        return masks
    keep = (masks.sum(1, keepdim=True) * frac).ceil().long()
    order = z_hat.masked_fill(~masks, float("inf")).argsort(1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(z_hat.shape[1]).expand_as(order).contiguous())
    return masks & (rank < keep)


def zero_masks(V: torch.Tensor, alive: torch.Tensor, zero: float) -> torch.Tensor:
    """Which live rows of each ``v`` (rows of ``V``, ``(k, m)``) are numerically zero."""
    scale = V.abs().amax(1, keepdim=True).clamp_min(torch.finfo(V.dtype).tiny)
    return (V.abs() <= zero * scale) & alive[None]


def refine(L: torch.Tensor, q: torch.Tensor, alive: torch.Tensor, tol: Tolerances,
           rounds: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-solve each direction on its own zero set and keep the sparse, clean ones.

    Returns:
        directions ``(k', r)``, their zero masks ``(k', m)`` and zero counts ``(k',)``.
    """
    live = int(alive.sum())
    for _ in range(rounds):
        masks = zero_masks(q @ L.T, alive, tol.zero)
        keep = masks.sum(1) >= tol.min_zeros(live, L.shape[1])
        q, masks = q[keep], masks[keep]
        if len(q) == 0:
            break
        q, ok = null_directions(L, masks, tol)
        q = q[ok]
    masks = zero_masks(q @ L.T, alive, tol.zero)
    counts = masks.sum(1)
    keep = counts >= tol.min_zeros(live, L.shape[1])
    return q[keep], masks[keep], counts[keep]


def sample_directions(L: torch.Tensor, alive: torch.Tensor, n: int, tol: Tolerances,
                      gen: torch.Generator, logits: torch.Tensor | None = None,
                      batch: int = 4096, deadline: Deadline | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample ``n`` row subsets of size ``r − 1`` and return the sparse kernel directions.

    Args:
        L: ``(m, r)`` left factor (float64).
        alive: rows of ``L`` that are not identically zero.
        n: number of subsets.
        tol: thresholds.
        gen: the seeded generator.
        logits: optional per-row sampling log-weights (Gumbel-top-k); ``None`` is uniform.
        batch: subsets per batched QR.
        deadline: checked before each batch; the draws done so far are returned.

    Returns:
        refined directions ``(k, r)``, zero masks ``(k, m)``, zero counts ``(k,)``.
    """
    m, r = L.shape
    rows = alive.nonzero().flatten()
    live = len(rows)
    found_q, found_m, found_c = [], [], []
    if live < r - 1:
        n = 0
    base = torch.zeros(live, dtype=L.dtype) if logits is None else logits[rows].to(L.dtype)
    for start in range(0, n, batch):
        if spent(deadline):
            break
        k = min(batch, n - start)
        u = torch.rand(k, live, generator=gen, dtype=L.dtype).clamp_min(1e-300)
        keys = base[None] - torch.log(-torch.log(u))
        subsets = rows[keys.topk(r - 1, dim=1).indices]
        sub = L[subsets]                                          # (k, r-1, r)
        qmat, rmat = torch.linalg.qr(sub.mT, mode="complete")
        q = qmat[:, :, -1]
        diag = rmat.diagonal(dim1=1, dim2=2).abs()
        full = diag.amin(1) > 1e-8 * diag.amax(1).clamp_min(1e-300)
        v = q @ L.T
        counts = zero_masks(v, alive, tol.zero).sum(1)
        good = full & (counts >= tol.min_zeros(live, r))
        if good.any():
            qs, ms, cs = refine(L, q[good], alive, tol)
            found_q.append(qs)
            found_m.append(ms)
            found_c.append(cs)
    if not found_q:
        return L.new_zeros(0, r), torch.zeros(0, m, dtype=torch.bool), torch.zeros(0, dtype=torch.long)
    return torch.cat(found_q), torch.cat(found_m), torch.cat(found_c)


class Candidates:
    """A pool of distinct directions (up to sign) with their zero masks and counts.

    Args:
        r: dimension of the directions (the rank of the attacked gradient).
        dedup: directions with ``|cos| > 1 - dedup`` are merged (the sparser one is kept).
    """

    def __init__(self, r: int, dedup: float = 1e-6) -> None:
        self.r, self.dedup = r, dedup
        self.q = torch.zeros(0, r, dtype=torch.float64)
        self.masks = torch.zeros(0, 0, dtype=torch.bool)
        self.counts = torch.zeros(0, dtype=torch.long)
        self.check: Callable[[torch.Tensor], torch.Tensor] | None = None   # directions → plausible
        self.rejected = 0

    def __len__(self) -> int:
        return int(self.q.shape[0])

    def add(self, q: torch.Tensor, masks: torch.Tensor, counts: torch.Tensor) -> int:
        """Add new directions; returns how many were new."""
        added = 0
        if self.check is not None and len(q):
            ok = self.check(q)
            self.rejected += int((~ok).sum())
            q, masks, counts = q[ok], masks[ok], counts[ok]
        if self.masks.shape[1] == 0:
            self.masks = torch.zeros(0, masks.shape[1], dtype=torch.bool)
        for qi, mi, ci in zip(q, masks, counts):
            qi = qi / qi.norm()
            if len(self):
                cos = (self.q @ qi).abs()
                j = int(cos.argmax())
                if cos[j] > 1 - self.dedup:
                    if ci > self.counts[j]:
                        self.q[j], self.masks[j], self.counts[j] = qi, mi, ci
                    continue
            self.q = torch.cat([self.q, qi[None]])
            self.masks = torch.cat([self.masks, mi[None]])
            self.counts = torch.cat([self.counts, ci.reshape(1)])
            added += 1
        return added
