"""Structured proposals: alternating projection onto masked columns of the next layer's shape.

When the attacked layer's ReLU feeds a ``nn.Linear`` with ``k`` outputs (``A = W₂ᵀ``, ``m × k``),
every column of ``∂L/∂Z = L Q`` is ``g_i = mask_i ⊙ (A δ_i)`` (see
:mod:`~gradleak.attacks.spear.structure`). So a column is a point of ``span(L)`` whose every
entry is either ``0`` or ``A_j δ`` — a binary mask of a ``k``-dimensional family. For ``b ≪ m``
the projection onto ``span(L)`` removes most of a wrong mask, which makes a simple alternation
converge to true columns from random starts:

1. start from a random mask ``M`` and ``δ = 1/k − e_y`` (the output gradient of an untrained
   model, whose softmax is nearly uniform, for a random label ``y``);
2. project the target ``M ⊙ (A δ)`` onto ``span(L)`` (``V``); refit ``δ`` on ``M``'s rows;
3. reassign every row to whichever is nearer, ``0`` or ``A_j δ``; repeat until ``M`` is stable.

A converged mask is turned into an *exact* direction by one linear solve: ``(q, δ)`` spans the
kernel of ``[L_Z, 0; L_M, −A_M]`` over the rows whose assignment is clear (the rows near neither
value are left out). Its eigen-gap test is that of :func:`~gradleak.attacks.spear.sampling.null_directions`;
a wrong mask has no kernel. Unlike a zero-set kernel, this one is exact for samples whose zero
set also nearly annihilates other samples of the same label (measured: natural32 b=16 width
200, all 16 directions from 2000 starts in 2 s; zero-set kernels of the same masks give 10).
This is gradleak's; the paper samples rows.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> m, b, k = 200, 6, 3
    >>> A = torch.randn(m, k, generator=g, dtype=torch.float64)
    >>> masks = torch.rand(m, b, generator=g) > 0.5
    >>> G = masks * (A @ torch.randn(k, b, generator=g, dtype=torch.float64))
    >>> L = torch.linalg.svd(G, full_matrices=False).U
    >>> from gradleak.attacks.spear.sampling import Tolerances
    >>> V, F, M = alternate(L, A, torch.ones(m, dtype=torch.bool), torch.rand(300, m, generator=g) < 0.5,
    ...                     torch.randn(300, k, generator=g, dtype=torch.float64))
    >>> q = exact_directions(L, A, torch.ones(m, dtype=torch.bool), V, F, Tolerances(zero=1e-9, null=1e-14))
    >>> true = (L.T @ G) / (L.T @ G).norm(dim=0)
    >>> hit = (q @ true).abs().max(1)
    >>> bool((hit.values > 1 - 1e-9).all()), len(set(hit.indices.tolist())) == b
    (True, True)
"""

from __future__ import annotations

from typing import Any

import torch

from gradleak.attacks.spear.budget import Deadline, spent
from gradleak.attacks.spear.sampling import Tolerances, null_directions


def alternate(L: torch.Tensor, A: torch.Tensor, alive: torch.Tensor, M: torch.Tensor, delta: torch.Tensor,
              iters: int = 60) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alternating projection from masks ``M`` ``(c, m)`` and output gradients ``delta`` ``(c, k)``.

    Returns:
        the projected columns ``V`` ``(c, m)``, the fitted values ``F = A δ`` ``(c, m)`` and the
        final masks ``(c, m)``.
    """
    k = A.shape[1]
    eye = torch.eye(k, dtype=L.dtype)
    V = F = L.new_zeros(M.shape)
    for _ in range(iters):
        T = M.to(L.dtype) * (delta @ A.T)
        V = (T @ L) @ L.T
        w = M.to(L.dtype)
        gram = torch.einsum("cm,mi,mj->cij", w, A, A)
        gram = gram + 1e-10 * gram.diagonal(dim1=1, dim2=2).amax(1).clamp_min(1e-300)[:, None, None] * eye
        delta = torch.linalg.solve(gram, ((V * w) @ A)[..., None])[..., 0]
        F = delta @ A.T
        new = ((V - F).abs() < V.abs()) & alive[None]
        if torch.equal(new, M):
            break
        M = new
    return V, F, M


def exact_directions(L: torch.Tensor, A: torch.Tensor, alive: torch.Tensor, V: torch.Tensor,
                     F: torch.Tensor, tol: Tolerances, clear: float = 0.25) -> torch.Tensor:
    """Exact unit directions ``(c', r)`` from converged columns: the kernel of the structured
    system on the rows whose assignment is clear (``|V_j|`` or ``|V_j − F_j|`` below ``clear ·
    |F_j|``, and ``|F_j|`` not negligible)."""
    big = F.abs() > 1e-3 * F.abs().amax(1, keepdim=True)
    zero = alive[None] & big & (V.abs() <= clear * F.abs())
    on = alive[None] & big & ((V - F).abs() <= clear * F.abs())
    q, ok = structured_kernels(L, A, zero, on, tol)
    return q[ok]


def structured_kernels(L: torch.Tensor, A: torch.Tensor, zero: torch.Tensor, on: torch.Tensor,
                       tol: Tolerances) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel ``(q, δ)`` of ``[L_Z, 0; L_on, −A_on]`` for row sets ``zero`` and ``on`` ``(c, m)``.

    Returns:
        unit directions ``(c, r)`` and whether each is a clean one-dimensional kernel ``(c,)``.
    """
    r, k = L.shape[1], A.shape[1]
    A = A / A.norm(dim=0).clamp_min(1e-300)
    z, a = zero.to(L.dtype), on.to(L.dtype)
    LL = torch.einsum("cm,mi,mj->cij", z + a, L, L)
    LA = -torch.einsum("cm,mi,mj->cij", a, L, A)
    AA = torch.einsum("cm,mi,mj->cij", a, A, A)
    ev, vec = torch.linalg.eigh(torch.cat([torch.cat([LL, LA], 2), torch.cat([LA.mT, AA], 2)], 1))
    low = ev[:, 0].clamp_min(0)
    ok = (low <= tol.null * ev[:, -1]) & (ev[:, 1] > tol.gap * low) & (ev[:, 1] > 100 * tol.null * ev[:, -1])
    ok &= (zero.sum(1) + on.sum(1)) >= r + k + 8
    q = vec[:, :r, 0]
    norms = q.norm(dim=1)
    ok &= norms > 1e-6
    return q / norms.clamp_min(1e-300)[:, None], ok


def kernels(L: torch.Tensor, zero: torch.Tensor, on: torch.Tensor, tol: Tolerances,
            A: torch.Tensor | None = None) -> torch.Tensor:
    """Directions ``(c', r)`` of predicted zero sets: the zero-set kernel, or where that is not
    clean (and ``A = W₂ᵀ`` is known) the structured kernel with the predicted active rows ``on``."""
    q, good = null_directions(L, zero, tol)
    if A is None or good.all():
        return q[good]
    q2, ok2 = structured_kernels(L, A, zero[~good], on[~good], tol)
    return torch.cat([q[good], q2[ok2]])


def _chunk(m: int, r: int, k: int) -> int:
    return max(16, min(512, (1 << 21) // (m * (r + k))))


def structured_chunk(prob: Any) -> int:
    """Starts per chunk for a problem with ``L`` and ``span.A`` (about 0.1–0.3 s of work)."""
    return _chunk(prob.L.shape[0], prob.L.shape[1], prob.span.A.shape[1])


def start_masks(prob: Any, c: int, gen: torch.Generator, known: torch.Tensor | None = None) -> torch.Tensor:
    """``c`` starting masks ``(c, m)``: a third each from random points of the inputs' row space
    ``span(R)`` (scaled like the row ratios), from the row ratios ``∂L/∂W_j / ∂L/∂b_j`` (mixtures
    of a few inputs), and uniform random masks. The first two are patterns an input can have,
    and reach more samples (natural32 b=32 width 200, 2000 starts: 31 and 30 of 32 samples
    against 24 from uniform masks).

    With directions ``known`` (rows), the random points are drawn where the *missing* inputs
    are: ``x_u = p_u R`` with ``p_u`` (a row of ``Q⁻¹``) orthogonal to every known direction,
    since ``Q⁻¹ Q = I``; so the starts close in on the samples not yet found."""
    m = prob.L.shape[0]
    live = prob.alive & (prob.gb.abs() > 1e-9 * prob.gb.abs().max())
    ratios = prob.gw[live] / prob.gb[live, None]
    if len(ratios) == 0:
        return (torch.rand(c, m, generator=gen) < 0.5) & prob.alive[None]
    scale = ratios.norm(dim=1).median()
    n1, n2 = c // 3, c // 3
    r = prob.R.shape[0]
    if known is not None and 0 < len(known) < r:
        basis = torch.linalg.svd(known, full_matrices=True).Vh[len(known):]      # ⟂ known directions
        n1, n2 = c // 2, c // 4
        p = torch.randn(n1, len(basis), generator=gen, dtype=prob.R.dtype) @ basis
    else:
        p = torch.randn(n1, r, generator=gen, dtype=prob.R.dtype)
    x = p @ prob.R
    wobble = torch.exp(0.3 * torch.randn(n1, 1, generator=gen, dtype=x.dtype))
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300) * scale * wobble
    x = torch.cat([x, ratios[torch.randint(0, len(ratios), (n2,), generator=gen)]])
    M = torch.cat([(x @ prob.W.T + prob.bias[None]) > 0, torch.rand(c - n1 - n2, m, generator=gen) < 0.5])
    return M & prob.alive[None]


def structured_directions(prob: Any, gen: torch.Generator, n: int, label_weights: torch.Tensor | None = None,
                          deadline: Deadline | None = None, chunk: int | None = None,
                          iters: int = 60, known: torch.Tensor | None = None) -> torch.Tensor:
    """Exact directions ``(c, r)`` from ``n`` starts of :func:`alternate` (module doc).

    Args:
        prob: a :class:`~gradleak.attacks.spear.search.Problem` with ``span`` set (``L``, ``R``,
            the gradients, the layer, live rows, tolerances; ``span.A = W₂ᵀ``).
        label_weights: how often to start from each label (default uniform).
        deadline: checked between chunks of starts.
        known: directions found so far (rows): starts aim at the others (:func:`start_masks`).
    """
    L, alive, tol = prob.L, prob.alive, prob.tol
    m, r = L.shape
    k = prob.span.A.shape[1]
    A = prob.span.A / prob.span.A.norm(dim=0).clamp_min(1e-300)
    chunk = chunk or _chunk(m, r, k)
    weights = label_weights if label_weights is not None else torch.ones(k, dtype=torch.float64)
    out = [L.new_zeros(0, r)]
    for start in range(0, n, chunk):
        if spent(deadline):
            break
        c = min(chunk, n - start)
        ys = torch.multinomial(weights.double(), c, replacement=True, generator=gen)
        delta = torch.full((c, k), 1.0 / k, dtype=L.dtype) - torch.nn.functional.one_hot(ys, k).to(L.dtype)
        V, F, _ = alternate(L, A, alive, start_masks(prob, c, gen, known), delta, iters)
        out += [exact_directions(L, A, alive, V, F, tol, clear) for clear in (0.25, 0.05)]
    q = torch.cat(out)
    return polish(L, A, alive, q, tol.zero) if len(q) else q


def polish(L: torch.Tensor, A: torch.Tensor, alive: torch.Tensor, q: torch.Tensor,
           zero: float) -> torch.Tensor:
    """Re-solve directions ``q`` (rows) on *every* live row: the kernel of the structured system
    with each row assigned by ``q``'s own column (zero or not). Used where a zero-set kernel is
    not clean (samples of the same label); a wrong assignment would only give a worse fit, so
    the caller keeps whichever reproduces the gradient better."""
    A = A / A.norm(dim=0).clamp_min(1e-300)
    r = L.shape[1]
    V = q @ L.T
    z = ((V.abs() <= zero * V.abs().amax(1, keepdim=True)) & alive[None]).to(L.dtype)
    a = alive[None].to(L.dtype) - z
    LL = torch.einsum("cm,mi,mj->cij", z + a, L, L)
    LA = -torch.einsum("cm,mi,mj->cij", a, L, A)
    AA = torch.einsum("cm,mi,mj->cij", a, A, A)
    vec = torch.linalg.eigh(torch.cat([torch.cat([LL, LA], 2), torch.cat([LA.mT, AA], 2)], 1)).eigenvectors
    out = vec[:, :r, 0]
    out = out / out.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return out * torch.sign((out * q).sum(1, keepdim=True) + 1e-300)
