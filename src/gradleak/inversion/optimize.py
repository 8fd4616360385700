"""The Adam loop over batched rows (restarts, and clients in ``run_many``) that optimisation attacks share.

The loop differentiates with respect to the inputs only (``torch.autograd.grad``; the model's
parameters never get a ``.grad``), keeps the loss history on the device (one copy per step, read
back once at the end), and returns the **lowest-loss iterate** of every row, not the last one.
Adam is written out here with exactly the arithmetic of ``torch.optim.Adam``'s single-tensor
path and ``MultiStepLR`` (so results equal theirs bit for bit on the CPU); this also keeps the
one-off import of ``torch._dynamo`` that the first ``torch.optim`` optimiser of a process
triggers (seconds) out of every attack.

Example:
    >>> import torch
    >>> target = torch.full((1, 1, 1, 2, 2), 0.3)
    >>> loss = lambda x: ((x - target) ** 2).flatten(1).sum(1)
    >>> out = optimise_inputs(loss, torch.zeros(2, 1, 1, 2, 2), steps=200, lr=0.05)
    >>> bool((out.x - 0.3).abs().max() < 0.05), len(out.history[0]), out.evaluations
    (True, 200, 201)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gradleak.core.types import Progress
from gradleak.inversion.schedules import step_decay_milestones

LossFn = Callable[..., "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]
"""``loss(x) -> (R,)`` per-row objective, or ``(objective, score)``: the score (e.g. the objective
without a term whose weight moves) picks the best iterate; by default the objective does. A timed
loss (``optimise_inputs(..., timed=True)``) is ``loss(x, t)``, ``t`` in [0, 1] the run's progress."""

KEEP = ("best", "last")
"""Which iterate the Adam loop returns: the lowest-loss one (default) or the last one."""

PROGRESS_CALLS = 200
"""At most about this many progress calls per run (each reads a loss back from the device)."""


@dataclass
class Optimised:
    """What :func:`optimise_inputs` found.

    Args:
        x: the lowest-score iterate of every row ``(R, ...)``, detached.
        loss: each row's lowest score ``(R,)`` (``inf`` when a row never had a finite one), on the CPU.
        history: each row's objective per step (``R`` lists of ``steps`` floats).
        last: the final iterate of every row.
        evaluations: loss evaluations per row (``steps`` + the final iterate's).
    """

    x: torch.Tensor
    loss: torch.Tensor
    history: list[list[float]]
    last: torch.Tensor
    evaluations: int

    def best_row(self, rows: slice | None = None) -> int:
        """Index of the row (within ``rows``) with the lowest score."""
        scores = self.loss if rows is None else self.loss[rows]
        return int(torch.nan_to_num(scores, nan=math.inf).argmin())


class Adam:
    """Adam on one tensor with ``torch.optim.Adam``'s single-tensor arithmetic (no ``torch.optim``).

    Example:
        >>> x = torch.zeros(2)
        >>> opt = Adam(x)
        >>> opt.step(torch.tensor([1.0, -1.0]), lr=0.1)
        >>> [round(v, 6) for v in x.tolist()]
        [-0.1, 0.1]
    """

    def __init__(self, x: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.x, self.betas, self.eps, self.t = x, betas, eps, 0
        self.m, self.v = torch.zeros_like(x), torch.zeros_like(x)

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: float) -> None:
        """One Adam step of ``x`` (in place) along ``grad`` with learning rate ``lr``."""
        b1, b2 = self.betas
        self.t += 1
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = self.v.sqrt().div_((1 - b2 ** self.t) ** 0.5).add_(self.eps)
        self.x.addcdiv_(self.m, denom, value=-(lr / (1 - b1 ** self.t)))


def lr_schedule(lr: float, steps: int, decay: bool = True, gamma: float = 0.1) -> list[float]:
    """The learning rate of every step: ×``gamma`` at 3/8, 5/8, 7/8 (``MultiStepLR``'s arithmetic).

    Example:
        >>> [round(v, 6) for v in lr_schedule(1.0, 8)]
        [1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.001]
    """
    milestones = Counter(step_decay_milestones(steps)) if decay else Counter()
    rates, current = [], lr
    for step in range(steps):
        if step in milestones and step > 0:
            current = current * gamma ** milestones[step]
        rates.append(current)
    return rates


def optimise_inputs(
    loss_fn: LossFn,
    x0: torch.Tensor,
    *,
    steps: int,
    lr: float = 0.1,
    signed: bool = True,
    box: tuple[float, float] | None = (0.0, 1.0),
    decay: bool = True,
    progress: Progress | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    keep: str = "best",
    timed: bool = False,
) -> Optimised:
    """Minimise ``loss_fn(x) -> (R,)`` over ``x`` of shape ``(R, ...)`` with Adam; keep each row's best iterate.

    Args:
        loss_fn: per-row loss (or ``(objective, score)``); rows are independent, so their sum is minimised.
        x0: initial inputs, one slice per row.
        steps: Adam steps.
        lr: learning rate.
        signed: replace the gradient by its sign before the step (Inverting Gradients).
        box: clamp into this range after every step (``None``: unconstrained).
        decay: step decay ×0.1 at 3/8, 5/8, 7/8.
        progress: called as ``progress(step, steps, best_loss)`` (at most ~200 times, and at the end).
        betas, eps: Adam's constants.
        keep: ``best`` (each row's lowest-loss iterate, the final one included) or ``last`` (the
            final iterate, scored by its own loss: gradleak before issue 15).
        timed: call ``loss_fn(x, t)`` instead, ``t`` the fraction of the run done (``step / (steps − 1)``;
            1.0 for the final score): for a loss whose weights change during the run.

    Returns:
        an :class:`Optimised`; the final iterate is evaluated once more so that it can win too.
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {', '.join(KEEP)}, got {keep!r}")
    x = x0.detach().clone().requires_grad_(True)
    rows, expand = x.shape[0], (-1,) + (1,) * (x.dim() - 1)
    adam = Adam(x, betas, eps)
    best = x0.detach().clone()
    best_score = torch.full((rows,), math.inf, dtype=x.dtype, device=x.device)
    history = torch.empty((steps, rows), dtype=x.dtype, device=x.device)
    every, span = max(1, steps // PROGRESS_CALLS), max(steps - 1, 1)

    def keep_best(score: torch.Tensor, at: torch.Tensor) -> None:
        nonlocal best, best_score
        better = score.detach() < best_score  # NaN is never better
        best_score = torch.where(better, score.detach(), best_score)
        best = torch.where(better.view(expand), at, best)

    for step, rate in enumerate(lr_schedule(lr, steps, decay)):
        objective, score = _split(loss_fn(x, step / span) if timed else loss_fn(x))
        (grad,) = torch.autograd.grad(objective.sum(), [x])
        with torch.no_grad():
            keep_best(score, x)
            history[step] = objective
            adam.step(grad.sign_() if signed else grad, rate)
            if box is not None:
                x.clamp_(*box)
        t = step + 1
        if progress is not None and (t % every == 0 or t == steps):
            progress(t, steps, float(torch.nan_to_num(best_score, nan=math.inf).min()))
    last = x.detach()
    with torch.enable_grad():
        final = _split(loss_fn(last, 1.0) if timed else loss_fn(last))[1].detach()
    if keep == "last":
        best, best_score = last, final
    else:
        keep_best(final, last)
    return Optimised(best, best_score.cpu(), history.T.tolist(), last, steps + 1)


def _split(out: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return out if isinstance(out, tuple) else (out, out)


def best_restart(loss_fn: LossFn, x: torch.Tensor) -> tuple[int, float]:
    """Index and loss of the row with the lowest loss at ``x`` (evaluated once, no step taken)."""
    with torch.enable_grad():
        final = _split(loss_fn(x.detach()))[1].detach()
    final = torch.nan_to_num(final, nan=float("inf"))
    idx = int(final.argmin())
    return idx, float(final[idx])
