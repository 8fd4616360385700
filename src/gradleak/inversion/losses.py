"""Gradient-matching distances over lists of tensors with a leading restart dimension.

Example:
    >>> import torch
    >>> g = [torch.ones(3), torch.ones(2, 2)]
    >>> trial = [t[None] * 2 for t in g]          # R = 1, same direction
    >>> float(cosine_distance(trial, g)[0]) < 1e-6
    True
    >>> float(l2_distance(trial, g)[0])
    7.0
"""

from __future__ import annotations

import torch

from gradleak.core.types import GradList


def _flat(t: torch.Tensor, r: int) -> torch.Tensor:
    return t.reshape(r, -1)


def l2_distance(trial: GradList, target: GradList, mean_over_tensors: bool = False) -> torch.Tensor:
    """``Σ_layers ‖g̃ − g‖²`` per restart (GGL divides by the number of tensors: ``mean_over_tensors``)."""
    r = trial[0].shape[0]
    total = sum(((_flat(a, r) - b.reshape(1, -1)) ** 2).sum(1) for a, b in zip(trial, target))
    return total / len(trial) if mean_over_tensors else total  # type: ignore[return-value]


def cosine_distance(trial: GradList, target: GradList, eps: float = 1e-12) -> torch.Tensor:
    """``1 − <g̃, g> / (‖g̃‖ ‖g‖)`` over all tensors jointly, per restart (Inverting Gradients)."""
    r = trial[0].shape[0]
    dot = sum((_flat(a, r) * b.reshape(1, -1)).sum(1) for a, b in zip(trial, target))
    n_trial = sum((_flat(a, r) ** 2).sum(1) for a in trial)
    n_target = sum((b ** 2).sum() for b in target)
    return 1 - dot / (torch.sqrt(n_trial * n_target) + eps)  # type: ignore[operator]


DISTANCES = {"l2": l2_distance, "cosine": cosine_distance}


class GradientDistance:
    """A gradient distance to fixed targets, one per client, for trial rows grouped by client.

    The targets are flattened once and their norms computed once (they are constants); each
    call flattens the trial gradients of ``K = N·R`` rows (``R`` consecutive rows per client) and
    returns ``(K,)`` distances, every row against its own client's target. One client (``N = 1``)
    is the plain case of one target for all rows. The distance and its gradient are fused
    (:class:`_Cosine`, :class:`_SquaredL2`: two passes over the gradients forward, one or two back,
    instead of the half-dozen an op-by-op graph takes); differentiable once (what matching needs).

    Args:
        targets: one gradient list per client, in ``model.named_parameters()`` order.
        kind: ``cosine`` (Inverting Gradients) or ``l2`` (squared).
        mean_over_tensors: divide ``l2`` by the number of tensors (GGL).

    Example:
        >>> import torch
        >>> dist = GradientDistance([[torch.ones(2)], [-torch.ones(2)]], "cosine")
        >>> dist([torch.tensor([[1.0, 1.0], [2.0, 2.0], [1.0, 1.0], [3.0, 3.0]])]).tolist()
        [0.0, 0.0, 2.0, 2.0]
    """

    def __init__(self, targets: list[GradList], kind: str = "cosine", *, mean_over_tensors: bool = False,
                 eps: float = 1e-12) -> None:
        if kind not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {kind!r}")
        self.kind, self.eps = kind, eps
        self.flat = torch.stack([torch.cat([t.detach().reshape(-1) for t in g]) for g in targets])  # (N, P)
        self.sq_norm = torch.linalg.vecdot(self.flat, self.flat)  # (N,)
        self.scale = 1.0 / len(targets[0]) if mean_over_tensors else 1.0

    def __call__(self, trial: GradList) -> torch.Tensor:
        k, n = trial[0].shape[0], self.flat.shape[0]
        g = torch.cat([t.reshape(k, -1) for t in trial], 1).view(n, k // n, -1)   # (N, R, P)
        if self.kind == "l2":
            return _SquaredL2.apply(g, self.flat).reshape(k) * self.scale
        return _Cosine.apply(g, self.flat, self.sq_norm, self.eps).reshape(k)


class _Cosine(torch.autograd.Function):
    """``1 − <g, t> / (√(‖g‖²‖t‖²) + eps)`` per row of ``g (N, R, P)`` against ``t (N, P)`` (constant)."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, t: torch.Tensor, t_sq: torch.Tensor, eps: float) -> torch.Tensor:
        dot = torch.linalg.vecdot(g, t[:, None])
        g_sq = torch.linalg.vecdot(g, g)
        root = torch.sqrt(g_sq * t_sq[:, None])
        den = root + eps
        ctx.save_for_backward(g, t, t_sq, dot, root, den)
        return 1 - dot / den

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        g, t, t_sq, dot, root, den = ctx.saved_tensors
        on_t = -grad / den                                                      # ∂/∂<g,t>
        on_g = torch.where(root > 0, grad * dot * t_sq[:, None] / (den * den * root.clamp_min(1e-300)),
                           torch.zeros_like(root))                              # ∂/∂g via ‖g‖
        return torch.addcmul(on_g[..., None] * g, on_t[..., None], t[:, None]), None, None, None


class _SquaredL2(torch.autograd.Function):
    """``‖g − t‖²`` per row of ``g (N, R, P)`` against ``t (N, P)`` (constant)."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        diff = g - t[:, None]
        ctx.save_for_backward(diff)
        return torch.linalg.vecdot(diff, diff)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (diff,) = ctx.saved_tensors
        return diff * (2 * grad)[..., None], None
