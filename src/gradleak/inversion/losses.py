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

from collections.abc import Iterable, Sequence

import torch

from gradleak.core.types import GradList
from gradleak.inversion.factored import Factored


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


SMALL = 1 << 17
"""Trial gradients of at most this many numbers in all are concatenated before the distance (one
fused op per pass beats one per tensor); larger ones are read tensor by tensor (no ``(K, P)`` copy)."""


class GradientDistance:
    """A gradient distance to fixed targets, one per client, for trial rows grouped by client.

    The targets are flattened once per tensor and their norms computed once (they are
    constants); each call views the trial gradients of ``K = N·R`` rows (``R`` consecutive rows per
    client) tensor by tensor — not concatenated, so no ``(K, P)`` copy is made forward or back,
    unless they are :data:`SMALL` — and returns ``(K,)`` distances, every row against its own
    client's target. One client (``N = 1``) is the plain case of one target for all rows. The
    distance and its gradient are fused (:class:`_Cosine`, :class:`_SquaredL2`: one pass over each
    tensor forward, one back, instead of the half-dozen an op-by-op graph takes); differentiable
    once (what matching needs).

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
        # per tensor, every client's target flattened: (N, P_l)
        self.parts = [torch.stack([t.detach().reshape(-1) for t in layer]) for layer in zip(*targets)]
        flat = torch.cat(self.parts, 1)                                        # (N, P)
        self.sq_norm = torch.linalg.vecdot(flat, flat)                         # (N,)
        # per set of factored tensors (indices): the other tensors' targets, apart and concatenated
        self.layouts: dict[tuple[int, ...], tuple[list[torch.Tensor], torch.Tensor]] = {(): (self.parts, flat)}
        self.scale = 1.0 / len(targets[0]) if mean_over_tensors else 1.0

    def __call__(self, trial: Sequence[torch.Tensor | Factored]) -> torch.Tensor:
        if self.kind == "l2":  # ‖g‖² − 2<g,t> + ‖t‖² would cancel as g nears t: build the factored tensors
            trial = [t.materialise() if isinstance(t, Factored) else t for t in trial]
        fact = tuple(i for i, t in enumerate(trial) if isinstance(t, Factored))
        dense = [t for t in trial if not isinstance(t, Factored)]
        first = trial[0]
        k, n = (first.rows if isinstance(first, Factored) else first.shape[0]), self.parts[0].shape[0]
        views, parts = self._views(dense, fact, k, n)
        extra = None
        if fact:  # Linear weights as factors: their inner products and squared norms, never the tensors
            pairs = [trial[i].dot_and_square(self.parts[i]) for i in fact]  # type: ignore[union-attr]
            extra = torch.stack([_total(p[0] for p in pairs), _total(p[1] for p in pairs)]).view(2, n, k // n)
        if self.kind == "l2":
            return _SquaredL2.apply(len(views), *views, *parts).reshape(k) * self.scale
        return _Cosine.apply(self.sq_norm, self.eps, extra, *views, *parts).reshape(k)

    def _views(self, dense: list[torch.Tensor], fact: tuple[int, ...], k: int,
               n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The dense trial tensors as ``(N, R, P_l)`` views and their targets (concatenated when small)."""
        if not dense:
            return [], []
        if fact not in self.layouts:  # once per set, not every step
            parts = [p for i, p in enumerate(self.parts) if i not in fact]
            self.layouts[fact] = (parts, torch.cat(parts, 1))
        parts, flat = self.layouts[fact]
        if k * flat.shape[1] <= SMALL:  # one concatenated tensor: fewer ops for a small graph
            return [torch.cat([t.reshape(k, -1) for t in dense], 1).view(n, k // n, -1)], [flat]
        return [t.reshape(n, k // n, -1) for t in dense], parts  # (N, R, P_l) each


class _Cosine(torch.autograd.Function):
    """``1 − <g, t> / (√(‖g‖²‖t‖²) + eps)`` per row, over tensors ``g_l (N, R, P_l)`` against
    constant targets ``t_l (N, P_l)`` (given as ``*g, *t``); ``extra (2, N, R)``, when given, adds
    inner products and squared norms found elsewhere (:class:`~gradleak.inversion.factored.Factored`)."""

    @staticmethod
    def forward(ctx, t_sq: torch.Tensor, eps: float, extra: torch.Tensor | None,  # type: ignore[override]
                *tensors: torch.Tensor) -> torch.Tensor:
        half = len(tensors) // 2
        gs, ts = tensors[:half], tensors[half:]
        ctx.extra = extra is not None
        dots = [torch.linalg.vecdot(g, t[:, None]) for g, t in zip(gs, ts)]
        sqs = [torch.linalg.vecdot(g, g) for g in gs]
        if extra is not None:
            dots.append(extra[0])
            sqs.append(extra[1])
        dot, g_sq = _total(dots), _total(sqs)
        root = torch.sqrt(g_sq * t_sq[:, None])
        den = root + eps
        ctx.save_for_backward(t_sq, dot, root, den, *tensors)
        return 1 - dot / den

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        t_sq, dot, root, den, *tensors = ctx.saved_tensors
        half = len(tensors) // 2
        on_t = (-grad / den)[..., None]                                         # ∂/∂<g,t>
        on_g = torch.where(root > 0, grad * dot * t_sq[:, None] / (den * den * root.clamp_min(1e-300)),
                           torch.zeros_like(root))[..., None]                   # ∂/∂g via ‖g‖
        grads = [torch.addcmul(on_g * g, on_t, t[:, None]) for g, t in zip(tensors[:half], tensors[half:])]
        extra = torch.stack([on_t[..., 0], on_g[..., 0] / 2]) if ctx.extra else None  # ∂/∂<g,t>, ∂/∂‖g‖²
        return (None, None, extra, *grads, *([None] * half))


def _total(parts: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of tensors (the first one itself when alone: no extra op)."""
    it = iter(parts)
    out = next(it)
    for p in it:
        out = out + p
    return out


class _SquaredL2(torch.autograd.Function):
    """``‖g − t‖²`` per row, over tensors ``g_l (N, R, P_l)`` against constant targets ``t_l (N, P_l)``."""

    @staticmethod
    def forward(ctx, half: int, *tensors: torch.Tensor) -> torch.Tensor:
        diffs = [g - t[:, None] for g, t in zip(tensors[:half], tensors[half:])]
        ctx.save_for_backward(*diffs)
        return _total(torch.linalg.vecdot(d, d) for d in diffs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        diffs = ctx.saved_tensors
        scale = (2 * grad)[..., None]
        return (None, *[d * scale for d in diffs], *([None] * len(diffs)))
