"""The L-BFGS loop of DLG and iDLG, for many independent rows (restarts, clients) at once.

Every row runs its own L-BFGS — its own curvature history, step sizes and stopping decisions,
exactly the algorithm of ``torch.optim.LBFGS`` without line search (the two-loop recursion,
the first step ``min(1, 1/‖g‖₁)·lr``, history pairs kept when ``yᵀs > 1e-10``, at most
``history_size`` of them, the same five stopping rules) — while all rows share one loss
evaluation per iteration. A row that has stopped keeps its point; the shared evaluation simply
ignores it. Results equal one row at a time to float tolerance (``tests/inversion``), and no
``torch.optim`` optimiser is created (the first one of a process imports ``torch._dynamo``).

A row also stops for good once its loss reaches ``loss_floor`` or becomes NaN/inf. The point
returned for each row is the lowest-loss point it evaluated (DLG's L-BFGS without line search
can diverge after getting close).

Example:
    >>> import torch
    >>> z0 = torch.zeros(2, 3)
    >>> out = lbfgs_minimise(lambda z: ((z - torch.tensor([1.0, 2.0, 3.0])) ** 2).sum(1), z0, steps=5)
    >>> bool(torch.allclose(out.z, torch.tensor([[1.0, 2.0, 3.0]] * 2), atol=1e-4))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gradleak.core.types import Progress


@dataclass
class LBFGSResult:
    """Per row: the lowest-loss point evaluated, its loss, the loss at the start of every step, evaluations."""

    z: torch.Tensor
    loss: torch.Tensor
    history: list[list[float]]
    evaluations: list[int]


@dataclass(frozen=True)
class Tolerances:
    """When L-BFGS stops (``torch.optim.LBFGS``'s names; gradleak's defaults are tighter than torch's).

    Args:
        tolerance_grad: a step ends when ``max|g| <=`` this (torch: 1e-7).
        tolerance_change: a step ends when the loss or the move changes less than this (torch: 1e-9).
        loss_floor: a row stops for good once its loss is at most this (0: only at exactly zero).
    """

    tolerance_grad: float = 1e-12
    tolerance_change: float = 1e-14
    loss_floor: float = 0.0


def lbfgs_minimise(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    *,
    steps: int,
    lr: float = 1.0,
    max_iter: int = 20,
    max_eval: int | None = None,
    history_size: int = 100,
    tol: Tolerances = Tolerances(),
    progress: Progress | None = None,
) -> LBFGSResult:
    """Run ``steps`` L-BFGS steps (each up to ``max_iter`` iterations) on every row of ``z0 (K, P)``.

    Args:
        loss_fn: ``loss(z (K, P)) -> (K,)``; row ``k``'s loss must depend on row ``k`` only.
        z0: the starting points.
        steps, lr, max_iter, max_eval, history_size: as ``torch.optim.LBFGS`` (``max_eval``
            defaults to ``max_iter · 5 / 4``).
        tol: the stopping tolerances and the loss floor.
        progress: ``progress(step, steps, best_loss)`` after every step.
    """
    k = z0.shape[0]
    max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
    z = z0.detach().clone().requires_grad_(True)
    best, best_loss = z0.detach().clone(), torch.full((k,), math.inf, dtype=z.dtype, device=z.device)
    evals = torch.zeros(k, dtype=torch.long, device=z.device)
    n_iter = torch.zeros(k, dtype=torch.long, device=z.device)
    alive = torch.ones(k, dtype=torch.bool, device=z.device)  # rows that have not stopped for good
    d = torch.zeros_like(z0)
    t = torch.zeros(k, dtype=z.dtype, device=z.device)
    prev_g, prev_loss = torch.zeros_like(z0), torch.zeros(k, dtype=z.dtype, device=z.device)
    h_diag = torch.ones(k, dtype=z.dtype, device=z.device)
    mem: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (y, s, rho, valid)
    history: list[list[float]] = [[] for _ in range(k)]

    def evaluate(counted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal best, best_loss
        with torch.enable_grad():
            loss = loss_fn(z)
            (g,) = torch.autograd.grad(loss.sum(), [z])
        loss, g = loss.detach(), g.detach()
        evals.add_(counted.long())
        better = counted & (loss < best_loss)
        best_loss = torch.where(better, loss, best_loss)
        best = torch.where(better[:, None], z.detach(), best)
        return loss, g

    for step in range(steps):
        loss, g = evaluate(alive)
        for row in alive.nonzero().flatten().tolist():
            history[row].append(float(loss[row]))
        alive &= torch.isfinite(loss) & (loss > tol.loss_floor)
        looping = alive & (g.abs().amax(1) > tol.tolerance_grad)
        current = torch.ones(k, dtype=torch.long, device=z.device)
        it = 0
        while it < max_iter and bool(looping.any()):
            it += 1
            n_iter += looping.long()
            first = looping & (n_iter == 1)
            d_new, h_diag = _direction(g, prev_g, d, t, h_diag, mem, looping & ~first, history_size)
            d = torch.where(first[:, None], -g, torch.where(looping[:, None], d_new, d))
            prev_g = torch.where(looping[:, None], g, prev_g)
            prev_loss = torch.where(looping, loss, prev_loss)
            t_first = torch.clamp(1.0 / g.abs().sum(1), max=1.0) * lr
            t = torch.where(first, t_first, torch.where(looping, torch.full_like(t, lr), t))
            gtd = (g * d).sum(1)
            looping &= gtd <= -tol.tolerance_change
            with torch.no_grad():
                z.add_(torch.where(looping[:, None], t[:, None] * d, torch.zeros_like(d)))
            if it == max_iter:
                break
            new_loss, new_g = evaluate(looping)
            loss = torch.where(looping, new_loss, loss)
            g = torch.where(looping[:, None], new_g, g)
            current += looping.long()
            looping &= (current < max_eval) & (g.abs().amax(1) > tol.tolerance_grad)
            looping &= (d * t[:, None]).abs().amax(1) > tol.tolerance_change
            looping &= (loss - prev_loss).abs() >= tol.tolerance_change
            looping &= torch.isfinite(loss) & (loss > tol.loss_floor)
        if progress is not None:
            progress(step + 1, steps, float(best_loss.min()))
        if not bool(alive.any()):
            break
    return LBFGSResult(best, best_loss, history, evals.tolist())


def _direction(g: torch.Tensor, prev_g: torch.Tensor, d: torch.Tensor, t: torch.Tensor, h_diag: torch.Tensor,
               mem: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]], update: torch.Tensor,
               history_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Push each updating row's curvature pair, then the two-loop recursion (rows without pairs: -H·g)."""
    y, s = g - prev_g, d * t[:, None]
    ys = (y * s).sum(1)
    keep = update & (ys > 1e-10)
    if bool(keep.any()):
        mem.append((y, s, torch.where(keep, 1.0 / ys, torch.zeros_like(ys)), keep))
        h_diag = torch.where(keep, ys / (y * y).sum(1), h_diag)
        valid = torch.stack([m[3] for m in mem])                      # (E, K)
        over = valid.long().sum(0) > history_size                     # rows holding one pair too many
        oldest = valid & (valid.long().cumsum(0) == 1) & over[None]
        if bool(oldest.any()):
            for i, (yi, si, ri, vi) in enumerate(mem):
                drop = oldest[i]
                mem[i] = (yi, si, torch.where(drop, torch.zeros_like(ri), ri), vi & ~drop)
            mem[:] = [m for m in mem if bool(m[3].any())]
    q = -g
    al = []
    for yi, si, ri, _ in reversed(mem):
        a = (si * q).sum(1) * ri
        q = q - a[:, None] * yi
        al.append(a)
    r = q * h_diag[:, None]
    for (yi, si, ri, _), a in zip(mem, reversed(al)):
        be = (yi * r).sum(1) * ri
        r = r + (a - be)[:, None] * si
    return r, h_diag
