"""Hybrid proposals for SPEAR: predicted ReLU zero sets instead of blind sampling.

Uniform sampling needs about ``2^(b−1)`` draws per direction, far more for a sample whose ReLU
zero set is small. The hybrid of Dimitrov et al. (arXiv 2403.03945, "SPEAR + Geiping") takes an
approximate input, predicts its zero set from ``Ẑ = W x̂ + bias`` and solves for the kernel on
the predicted rows. Two cheap sources of approximate inputs are used here:

* **row ratios** — row ``j`` of the weight gradient divided by the bias gradient,
  ``∂L/∂W_j / ∂L/∂b_j``, is an affine combination of the inputs that activate neuron ``j``; it is
  one input *exactly* when only that input activates it (common: neurons differ a lot in how
  often they fire). A wrong (mixed) proposal is harmless: it only yields a direction when its
  predicted zero set lies inside a true one, and then the direction is correct.
* **any reconstruction** (e.g. from ``ig``): its predicted zero sets bias the row sampling.

Rows are also weighted by how often they were zero in the directions found so far
(``row_logits``), which steers sampling toward neurons that are off for most samples.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> W, bias = torch.randn(30, 5, generator=g, dtype=torch.float64), torch.randn(30, generator=g).double()
    >>> x = torch.randn(1, 5, generator=g, dtype=torch.float64)
    >>> gz = torch.randn(30, 1, generator=g, dtype=torch.float64) * ((x @ W.T + bias) > 0).T
    >>> row_ratio_inputs(gz @ x, gz[:, 0], gz[:, 0] != 0).sub(x).abs().max() < 1e-12
    tensor(True)
"""

from __future__ import annotations

import torch

from gradleak.attacks.spear.budget import Deadline, spent
from gradleak.attacks.spear.sampling import (
    Candidates,
    Tolerances,
    null_directions,
    predicted_masks,
    refine,
)


def row_ratio_inputs(grad_w: torch.Tensor, grad_bias: torch.Tensor, alive: torch.Tensor,
                     min_rel: float = 1e-6) -> torch.Tensor:
    """Approximate inputs ``∂L/∂W_j / ∂L/∂b_j`` for live rows with a non-negligible bias gradient."""
    scale = grad_bias.abs().max().clamp_min(1e-300)
    rows = alive & (grad_bias.abs() > min_rel * scale)
    return grad_w[rows] / grad_bias[rows, None]


def directions_from_inputs(x_hat: torch.Tensor, L: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor, alive: torch.Tensor, tol: Tolerances,
                           fracs: tuple[float, ...] = (1.0, 0.7), chunk: int = 256,
                           deadline: Deadline | None = None,
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact directions whose zero sets contain the predicted zero sets of ``x_hat`` (``k × n``).

    Each input predicts ``{j : W_j x̂ + bias_j <= 0}``; if ``L`` restricted to those rows (or to
    their most negative ``frac`` share, which tolerates rows near the boundary) has a clean
    one-dimensional kernel, that kernel is refined on its own zero set and returned.

    Returns:
        directions ``(k', r)``, zero masks ``(k', m)``, zero counts ``(k',)``.
    """
    out_q, out_m, out_c = [], [], []
    for start in range(0, x_hat.shape[0], chunk):
        if spent(deadline):
            break
        z_hat = x_hat[start:start + chunk] @ weight.T + bias[None]
        for frac in fracs:
            q, ok = null_directions(L, predicted_masks(z_hat, alive, frac), tol)
            if ok.any():
                qs, ms, cs = refine(L, q[ok], alive, tol)
                out_q.append(qs)
                out_m.append(ms)
                out_c.append(cs)
    if not out_q:
        return L.new_zeros(0, L.shape[1]), torch.zeros(0, L.shape[0], dtype=torch.bool), \
            torch.zeros(0, dtype=torch.long)
    return torch.cat(out_q), torch.cat(out_m), torch.cat(out_c)


def row_logits(pool: Candidates, L: torch.Tensor, alive: torch.Tensor,
               strength: float = 1.0, prior_weight: float = 2.0) -> torch.Tensor:
    """Per-row sampling log-weights: ``strength ·`` logit of the estimated chance a row is zero.

    The estimate pools the zero masks of the directions found so far with a prior from the row
    norms of ``L`` (neurons that fire for fewer samples have smaller rows).
    """
    norms = L.norm(dim=1)
    live = int(alive.sum())
    rank = torch.empty(L.shape[0], dtype=L.dtype)
    rank[norms.argsort()] = torch.arange(L.shape[0], dtype=L.dtype)
    prior = (1 - rank / max(live - 1, 1)).clamp(0, 1)
    zeros = pool.masks.sum(0).to(L.dtype) if len(pool) else torch.zeros_like(norms)
    p = (zeros + prior_weight * prior + 1) / (len(pool) + prior_weight + 2)
    return strength * torch.log(p / (1 - p))


def input_logits(x_hat: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 sharpness: float = 4.0) -> torch.Tensor:
    """Row log-weights ``(k, m)`` favouring rows an approximate input switches off most clearly."""
    z_hat = x_hat @ weight.T + bias[None]
    scale = z_hat.abs().median(dim=1, keepdim=True).values.clamp_min(1e-12)
    return -sharpness * z_hat / scale


def line_scan_directions(start: torch.Tensor, end: torch.Tensor, L: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor, alive: torch.Tensor, tol: Tolerances,
                         frac: float = 1.0, deadline: Deadline | None = None) -> torch.Tensor:
    """Exact directions of inputs that lie on the lines through ``start[i]`` and ``end[i]``.

    Two row ratios whose neurons fire for the same two samples both lie on the line through
    those samples, so every ReLU interval of that line (between consecutive breakpoints
    ``W x(t) + bias = 0``) is tried as a predicted zero set.

    Returns:
        unit directions ``(k, r)`` whose predicted zero sets have a clean kernel.
    """
    z0 = start @ weight.T + bias[None]                                # (k, m)
    dz = (end - start) @ weight.T                                     # (k, m)
    cuts = torch.where(dz.abs() > 0, -z0 / dz.where(dz.abs() > 0, torch.ones_like(dz)),
                       torch.zeros_like(dz)).sort(1).values
    span = (cuts[:, -1:] - cuts[:, :1]).abs() + 1
    ts = torch.cat([cuts[:, :1] - span, (cuts[:, 1:] + cuts[:, :-1]) / 2, cuts[:, -1:] + span], 1)
    z_hat = (z0[:, None, :] + ts[:, :, None] * dz[:, None, :]).reshape(-1, z0.shape[1])
    masks = predicted_masks(z_hat, alive, frac).unique(dim=0)
    r = L.shape[1]
    outer = (L[:, :, None] * L[:, None, :]).reshape(-1, r * r)
    keep = [masks[:0]]
    for part in masks.split(max(64, (1 << 24) // (L.shape[0] * r * r))):
        if spent(deadline):
            break
        evals = torch.linalg.eigvalsh((part.to(L.dtype) @ outer).reshape(-1, r, r))
        keep.append(part[evals[:, 0] <= tol.null * evals[:, -1]])
    q, ok = null_directions(L, torch.cat(keep), tol)
    return q[ok]


def row_pairs(pool: Candidates, grad_w: torch.Tensor, grad_bias: torch.Tensor, alive: torch.Tensor,
              weight: torch.Tensor, bias: torch.Tensor, gen: torch.Generator,
              limit: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    """Line end points likely to carry a missing sample: pairs of row ratios of neurons that fire
    for the same single known sample (or none), and lines from a known sample's exact input
    (a row ratio whose predicted zero set equals that direction's) to such row ratios."""
    empty = grad_w.new_zeros(0, grad_w.shape[1])
    if len(pool) == 0:
        return empty, empty
    active = ~pool.masks & alive[None]                                # (c, m) known sample active
    ok = alive & (active.sum(0) <= 1) & (grad_bias.abs() > 1e-9 * grad_bias.abs().max())
    rows = ok.nonzero().flatten()
    ratios = grad_w[rows] / grad_bias[rows, None]
    owner = torch.where(active[:, rows].any(0), active[:, rows].to(torch.int64).argmax(0), -1)
    pred = (ratios @ weight.T + bias[None] <= 0) & alive[None]
    exact = (pred[:, None, :] == pool.masks[None]).all(-1)           # (rows, c)
    first, second = [], []
    for value in owner.unique().tolist():
        group = (owner == value).nonzero().flatten()
        i, j = torch.triu_indices(len(group), len(group), 1)
        first.append(ratios[group[i]])
        second.append(ratios[group[j]])
        if value >= 0 and exact[:, value].any():
            anchor = ratios[exact[:, value].nonzero()[0, 0]]
            first.append(anchor.expand(len(group), -1))
            second.append(ratios[group])
    if not first:
        return empty, empty
    start, end = torch.cat(first), torch.cat(second)
    pick = torch.randperm(len(start), generator=gen)[:limit]
    return start[pick], end[pick]
