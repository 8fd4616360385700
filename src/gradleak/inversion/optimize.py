"""The Adam loop over batched restarts that optimisation attacks share.

Example:
    >>> import torch
    >>> target = torch.full((1, 1, 1, 2, 2), 0.3)
    >>> loss = lambda x: ((x - target) ** 2).flatten(1).sum(1)
    >>> x, hist = optimise_inputs(loss, torch.zeros(2, 1, 1, 2, 2), steps=200, lr=0.05)
    >>> bool((x - 0.3).abs().max() < 0.05), len(hist[0])
    (True, 200)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gradleak.core.types import Progress
from gradleak.inversion.schedules import step_decay

LossFn = Callable[[torch.Tensor], torch.Tensor]


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
) -> tuple[torch.Tensor, list[list[float]]]:
    """Minimise ``loss_fn(x) -> (R,)`` over ``x`` of shape ``(R, ...)`` with Adam.

    Args:
        loss_fn: per-restart loss; restarts are independent, so their sum is minimised.
        x0: initial inputs, one slice per restart.
        steps: Adam steps.
        lr: learning rate.
        signed: replace the gradient by its sign before the step (Inverting Gradients).
        box: clamp into this range after every step (``None``: unconstrained).
        decay: step decay ×0.1 at 3/8, 5/8, 7/8.
        progress: called as ``progress(step, steps, best_loss)``.

    Returns:
        the final inputs and the loss history per restart (``R`` lists of ``steps`` floats).
    """
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    sched = step_decay(opt, steps) if decay else None
    history: list[list[float]] = [[] for _ in range(x.shape[0])]
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        losses = loss_fn(x)
        losses.sum().backward()
        if signed:
            x.grad.sign_()  # type: ignore[union-attr]
        opt.step()
        if sched is not None:
            sched.step()
        if box is not None:
            with torch.no_grad():
                x.clamp_(*box)
        values = losses.detach().tolist()
        for r, v in enumerate(values):
            history[r].append(v)
        if progress is not None:
            progress(step + 1, steps, min(values))
    return x.detach(), history


def best_restart(loss_fn: LossFn, x: torch.Tensor) -> tuple[int, float]:
    """Index and loss of the restart with the lowest final loss (evaluated once more, no grad)."""
    with torch.enable_grad():
        final = loss_fn(x.detach()).detach()
    final = torch.nan_to_num(final, nan=float("inf"))
    idx = int(final.argmin())
    return idx, float(final[idx])
