"""The L-BFGS loop of DLG and iDLG.

Example:
    >>> import torch
    >>> v = torch.zeros(3, requires_grad=True)
    >>> hist = lbfgs_minimise(lambda: ((v - 1) ** 2).sum(), [v], steps=5)
    >>> bool(torch.allclose(v, torch.ones(3), atol=1e-4))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gradleak.core.types import Progress


def lbfgs_minimise(
    loss_fn: Callable[[], torch.Tensor],
    variables: list[torch.Tensor],
    *,
    steps: int,
    lr: float = 1.0,
    max_iter: int = 20,
    line_search: str | None = None,
    progress: Progress | None = None,
) -> list[float]:
    """Run ``steps`` L-BFGS steps (each up to ``max_iter`` evaluations) on ``variables``.

    Stops early when the loss becomes NaN/inf (DLG's L-BFGS without line search can
    diverge); the caller keeps the best snapshot via the returned history.
    """
    opt = torch.optim.LBFGS(variables, lr=lr, max_iter=max_iter, line_search_fn=line_search,
                            tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    history: list[float] = []
    for step in range(steps):
        loss = float(opt.step(closure).detach())
        history.append(loss)
        if progress is not None:
            progress(step + 1, steps, loss)
        if not math.isfinite(loss) or loss == 0.0:
            break
    return history
