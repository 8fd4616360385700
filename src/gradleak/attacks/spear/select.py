"""SPEAR's last steps: scale/sign recovery from the bias gradient, the sparsity-match score,
greedy selection of ``b`` directions, and completion of one missing direction.

Notation (rows are samples): the layer computes ``Z = X Wᵀ + bias`` for inputs ``X`` (``b × n``);
its gradients are ``∂L/∂W = G X`` and ``∂L/∂bias = G 1`` with ``G = ∂L/∂Z`` (``m × b``). With the
factorisation ``∂L/∂W = L R`` there is an invertible ``Q`` with ``G = L Q`` and ``X = Q⁻¹ R``.
Given unit directions ``Q̂`` (columns), ``Q = Q̂ diag(s)`` and ``∂L/∂bias = L Q̂ s`` fixes ``s``.
Dimitrov, Baader, Müller, Vechev (NeurIPS 2024, arXiv 2403.03945).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> W, bias = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.zeros(40, dtype=torch.float64)
    >>> X = torch.randn(2, 6, generator=g, dtype=torch.float64)
    >>> G = torch.randn(40, 2, generator=g, dtype=torch.float64) * ((X @ W.T + bias) > 0).T
    >>> U, S, Vh = torch.linalg.svd(G @ X, full_matrices=False)
    >>> L, R = U[:, :2], S[:2, None] * Vh[:2]
    >>> Q = L.T @ G
    >>> X_hat, _ = assemble(L, R, G.sum(1), Q / Q.norm(dim=0))
    >>> bool(torch.allclose(X_hat, X))
    True
"""

from __future__ import annotations

import torch

from gradleak.attacks.spear.budget import Deadline, spent
from gradleak.attacks.spear.masks import kernels
from gradleak.attacks.spear.sampling import (
    Candidates,
    Tolerances,
    predicted_masks,
    zero_masks,
)


def assemble(L: torch.Tensor, R: torch.Tensor, grad_bias: torch.Tensor,
             q_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``X = diag(s)⁻¹ Q̂⁻¹ R`` and ``G = L Q̂ diag(s)`` from unit directions ``Q̂`` (``r × r``).

    ``s`` solves ``L Q̂ s = ∂L/∂bias`` in the least-squares sense, which fixes scale and sign.
    """
    s = torch.linalg.lstsq(L @ q_hat, grad_bias[:, None]).solution[:, 0]
    tiny = torch.finfo(L.dtype).eps * s.abs().max().clamp_min(1e-300)
    s = torch.where(s.abs() > tiny, s, torch.full_like(s, tiny))
    X = torch.linalg.solve(q_hat, R) / s[:, None]
    return X, (L @ q_hat) * s[None]


def consistency(X: torch.Tensor, G: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                alive: torch.Tensor, zero: float) -> float:
    """The sparsity-match score λ: for each sample, the share of live rows where ``Z <= 0`` iff
    ``G ≈ 0``; the worst sample's share is returned (one wrong direction spoils one sample).

    λ = 1 for the true batch (up to rows exactly on the ReLU boundary).
    """
    per_sample = agreement(X, G, weight, bias, alive, zero)
    return float(per_sample.min()) if per_sample.numel() else 0.0


def agreement(X: torch.Tensor, G: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              alive: torch.Tensor, zero: float) -> torch.Tensor:
    """Per sample, the share of live rows whose ReLU state matches the zero pattern of ``G``."""
    neg = (X @ weight.T + bias[None]) <= 0
    zeros = zero_masks(G.T, alive, zero)
    return (neg == zeros)[:, alive].double().mean(1)


def select(pool: Candidates, L: torch.Tensor, R: torch.Tensor, grad_bias: torch.Tensor,
           weight: torch.Tensor, bias: torch.Tensor, alive: torch.Tensor, tol: Tolerances,
           max_swaps: int = 400, deadline: Deadline | None = None) -> tuple[torch.Tensor | None, float]:
    """Choose ``r`` of the pool's directions: greedy by sparsity, then swaps that raise λ.

    Returns:
        the chosen unit directions ``(r, r)`` (columns) or ``None`` when fewer than ``r``
        independent ones exist, and their score λ.
    """
    r = L.shape[1]
    order = pool.counts.argsort(descending=True).tolist()
    chosen: list[int] = []
    for i in order:
        trial = pool.q[chosen + [i]].T
        sv = torch.linalg.svdvals(trial)
        if sv[-1] > 1e-6 * sv[0]:
            chosen.append(i)
        if len(chosen) == r:
            break
    if len(chosen) < r:
        return None, 0.0

    def score(idx: list[int]) -> float:
        q_hat = pool.q[idx].T
        if torch.linalg.svdvals(q_hat)[-1] <= 1e-9:
            return -1.0
        X, G = assemble(L, R, grad_bias, q_hat)
        return consistency(X, G, weight, bias, alive, tol.zero)

    best = score(chosen)
    others = [i for i in order if i not in chosen]
    tries = 0
    improved = True
    while improved and best < 1.0 and others and tries < max_swaps:
        improved = False
        for slot in range(r):
            for j, cand in enumerate(others):
                trial = chosen.copy()
                trial[slot] = cand
                value = score(trial)
                tries += 1
                if value > best:
                    others[j], chosen, best, improved = chosen[slot], trial, value, True
                if tries >= max_swaps or spent(deadline):
                    break
            if tries >= max_swaps or spent(deadline):
                break
    return pool.q[chosen].T, best


def complete_last(known: torch.Tensor, L: torch.Tensor, R: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor, alive: torch.Tensor, tol: Tolerances,
                  frac: float = 1.0, span_a: torch.Tensor | None = None) -> torch.Tensor:
    """Candidate directions for the one missing column when ``r − 1`` are known.

    The missing sample's row of ``Q⁻¹`` is orthogonal to the known directions, so its input is
    ``c · y`` with ``y`` known and only the scale ``c`` unknown. Each interval of ``c`` between
    two ReLU breakpoints predicts a zero set; the one that has a kernel gives the direction.

    Args:
        known: ``(r − 1, r)`` known unit directions (rows).
        frac: use only the most negative share of each predicted zero set (tolerance).
        span_a: ``W₂ᵀ`` of the next layer, if known: zero sets whose kernel is not clean get
            the structured test (:func:`~gradleak.attacks.spear.masks.kernels`).

    Returns:
        candidate unit directions ``(k, r)`` (rows) with a clean kernel.
    """
    p = torch.linalg.svd(known, full_matrices=True).Vh[-1]
    a = weight @ (p @ R)
    ok = alive & (a.abs() > 0)
    breaks = (-bias[ok] / a[ok]).sort().values
    if len(breaks) == 0:
        return L.new_zeros(0, L.shape[1])
    span = float(breaks[-1] - breaks[0]) + 1.0
    mids = torch.cat([breaks[:1] - span, (breaks[1:] + breaks[:-1]) / 2, breaks[-1:] + span])
    z_hat = mids[:, None] * a[None] + bias[None]
    return kernels(L, predicted_masks(z_hat, alive, frac), (z_hat > 0) & alive[None], tol, span_a)


def complete_pair(known: torch.Tensor, L: torch.Tensor, R: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor, alive: torch.Tensor, tol: Tolerances, frac: float = 1.0,
                  chunk: int | None = None, deadline: Deadline | None = None,
                  max_flops: float = 3e10, span_a: torch.Tensor | None = None) -> torch.Tensor:
    """Candidate directions for the two missing columns when ``r − 2`` are known.

    Both missing inputs lie in the plane ``{α y₁ + β y₂}`` spanned by the rows of ``Q⁻¹`` that
    are orthogonal to the known directions. The ReLU lines ``α a₁ⱼ + β a₂ⱼ + biasⱼ = 0`` cut the
    plane into cells; every cell touches a vertex, so the four points around each vertex visit
    all cells, and a cell whose predicted zero set has a kernel gives a missing direction.
    With ``2·m_live²·m·r²`` above ``max_flops`` (wide layers) it returns nothing: the cells are
    too many to test within a budget. ``span_a`` as in :func:`complete_last`.

    Returns:
        candidate unit directions ``(k, r)`` (rows) with a clean kernel.
    """
    basis = torch.linalg.svd(known, full_matrices=True).Vh[-2:]
    a = (basis @ R) @ weight.T                                     # (2, m)
    rows = (alive & (a.abs().sum(0) > 0)).nonzero().flatten()
    r = L.shape[1]
    if 2 * len(rows) ** 2 * L.shape[0] * r * r > max_flops:      # too many cells to test
        return L.new_zeros(0, r)
    i_all, j_all = torch.triu_indices(len(rows), len(rows), 1)
    outer = (L[:, :, None] * L[:, None, :]).reshape(-1, r * r)
    chunk = chunk or max(64, (1 << 24) // (L.shape[0] * r * r))
    hits, ons, seen = [], [], set()
    for start in range(0, len(i_all), chunk):
        if spent(deadline):
            break
        i, j = rows[i_all[start:start + chunk]], rows[j_all[start:start + chunk]]
        mat = torch.stack([a[:, i].T, a[:, j].T], 1)               # (k, 2, 2)
        solvable = torch.linalg.det(mat).abs() > 1e-12 * mat.abs().amax((1, 2)).square()
        mat, rhs = mat[solvable], -torch.stack([bias[i], bias[j]], 1)[solvable]
        vertex = torch.linalg.solve(mat, rhs[:, :, None])[:, :, 0]  # (k, 2)
        normals = mat / mat.norm(dim=2, keepdim=True)
        eps = 1e-7 * (1 + vertex.norm(dim=1, keepdim=True))
        points = torch.cat([vertex + eps * (s1 * normals[:, 0] + s2 * normals[:, 1])
                            for s1 in (-1, 1) for s2 in (-1, 1)])
        z_hat = points @ a + bias[None]
        masks, first = _unique_rows(predicted_masks(z_hat, alive, frac))
        on = ((z_hat > 0) & alive[None])[first]
        keys = [row.numpy().tobytes() for row in masks]
        new = torch.tensor([key not in seen for key in keys], dtype=torch.bool)
        seen.update(keys)
        masks, on = masks[new], on[new]
        for part, part_on in zip(masks.split(chunk), on.split(chunk)):
            evals = torch.linalg.eigvalsh((part.to(L.dtype) @ outer).reshape(-1, r, r))
            hit = evals[:, 0] <= tol.null * evals[:, -1]
            hits.append(part[hit])
            ons.append(part_on[hit])
    if not hits:
        return L.new_zeros(0, r)
    return kernels(L, torch.cat(hits), torch.cat(ons), tol, span_a)


def _unique_rows(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of a boolean matrix and the index of the first occurrence of each."""
    uniq, inverse = masks.unique(dim=0, return_inverse=True)
    first = torch.full((len(uniq),), len(masks), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(masks)), reduce="amin")
    return uniq, first


def describe(q: torch.Tensor, L: torch.Tensor, alive: torch.Tensor,
              tol: Tolerances) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero masks and counts of directions ``q`` (rows), in the pool's format."""
    masks = zero_masks(q @ L.T, alive, tol.zero)
    return q, masks, masks.sum(1)


def independent(pool: Candidates, b: int) -> torch.Tensor:
    """Up to ``b`` linearly independent pool directions (rows), sparsest first."""
    chosen: list[torch.Tensor] = []
    for i in pool.counts.argsort(descending=True).tolist():
        trial = torch.stack(chosen + [pool.q[i]])
        if torch.linalg.svdvals(trial)[-1] > 1e-6:
            chosen.append(pool.q[i])
        if len(chosen) == b:
            break
    return torch.stack(chosen) if chosen else torch.zeros(0, b, dtype=torch.float64)


def fill_directions(pool: Candidates, b: int) -> torch.Tensor:
    """``b`` unit directions (columns): the pool's independent ones plus an orthonormal complement."""
    basis = independent(pool, b)
    if len(basis) == 0:
        return torch.eye(b, dtype=torch.float64)
    full = torch.linalg.svd(basis, full_matrices=True).Vh
    return torch.cat([basis, full[len(basis):]]).T
