"""Is a SPEAR reconstruction complete? Judged by the gradient it reproduces, not by a score cut-off.

Any invertible ``Q̂`` factors the observed gradient, ``(L Q̂)(Q̂⁻¹ R) = L R``, so reproducing
``∂L/∂W`` alone proves nothing. What a true batch also satisfies is the ReLU: the recovered
input ``x̂_i`` switches neuron ``j`` off exactly where column ``i`` of ``∂L/∂Z`` vanishes. So
the recovered batch's own gradient is ``Ĝ ⊙ A(X̂)`` — the recovered ``∂L/∂Z`` with every entry
removed where ``x̂_i`` switches the neuron *surely* off — and the test is whether
``(Ĝ ⊙ A) X̂`` and ``(Ĝ ⊙ A) 1`` reproduce ``∂L/∂W`` and ``∂L/∂b``:

* ``residual_w = ‖(Ĝ⊙A) X̂ − ∂L/∂W‖_F / ‖∂L/∂W‖_F`` and ``residual_b`` likewise;
* the *floor* is what no batch of ``b`` samples can explain, the gradient outside rank ``b``
  (``‖∂L/∂W − L R‖_F / ‖∂L/∂W‖_F``, float rounding, noise);
* complete ⇔ each residual is within ``floor + max(1e-6, floor)`` (at most twice what rank ``b``
  leaves, or 1e-6 above it), and every sample's column keeps at most ``max(1e-6, 10 · σ_{b+1}/σ_b)``
  of its mass where its own input says the neuron is off.

Measured on float32 FedSGD gradients (MNIST/natural32, b = 16–64): an exact batch leaves
residuals of 1.0–1.15 × the floor (≈ 4e-8–9e-8) and violations ≤ 1.3e-7, while a single
direction off by 1e-3 (a 60 dB image) leaves residuals ≥ 4e-5 and a violation ≥ 4e-4.
"Surely off" means ``z < −margin``, the margin being the rounding of ``z``.

A FedAvg delta ``−ΔW/(lr·T)`` averages ``T`` gradients whose ReLU patterns move with the weights
(measured: a pre-activation −0.34 at the start crossed zero and came back within 5 steps at
lr 0.1, so neither the start pattern nor the total movement predicts the zero set). There the
check *replays* the client: labels fitted to the recovered columns (or the leaked ones), the
local steps run in float64 from the same weights, and the first layer's ``ΔW`` and ``Δb``
compared with the update (``replay``, built by the attack; full-batch steps only, since the
client's shuffling of mini-batches is unknown). An exact batch replays to 5e-7–6e-6 (float32
rounding of the client's training), a 1e-4 change of one pixel of one image to ≥ 2e-5, one wrong
label to ≥ 0.15; the tolerance is ``max(1e-6, 10 · floor)``.

A gradient noisier than ``σ_{b+1}/σ_b = 1e-4`` (DP noise, noise defenses) cannot be verified
exact: ``complete`` stays ``False`` and ``noise_limited`` says why — unless ``σ_{b+1}/σ_1`` shows
that what lies outside rank ``b`` is float32 rounding (:data:`ROUNDING_LEVEL`).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> W, bias = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.zeros(40, dtype=torch.float64)
    >>> X = torch.randn(3, 6, generator=g, dtype=torch.float64)
    >>> G = torch.randn(40, 3, generator=g, dtype=torch.float64) * ((X @ W.T + bias) > 0).T
    >>> U, S, Vh = torch.linalg.svd(G @ X, full_matrices=False)
    >>> L, R = U[:, :3], S[:3, None] * Vh[:3]
    >>> Q = L.T @ G
    >>> v = verify(G @ X, G.sum(1), L, R, Q / Q.norm(dim=0), W, bias, torch.ones(40, dtype=torch.bool))
    >>> v.complete, v.samples_ok
    (True, 3)
    >>> bad = verify(G @ X, G.sum(1), L, R, torch.eye(3, dtype=torch.float64), W, bias,
    ...              torch.ones(40, dtype=torch.bool))
    >>> bad.complete
    False
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from gradleak.attacks.spear.select import assemble

NOISE_LIMIT = 1e-4
"""Above this spectrum gap ``σ_{b+1}/σ_b`` a batch is not claimed exact (see the module doc)..."""

ROUNDING_LEVEL = 1e-6
"""... unless what lies outside rank ``b`` is float32 rounding: ``σ_{b+1}/σ_1`` at most this.

The gap ``σ_{b+1}/σ_b`` also grows with the batch's conditioning: natural32 b=64 width 500 has
a gap of 1.2e-4 from rounding alone, and every image exact. Relative to the largest singular
value, float32 rounding leaves 1.4e-8–2.3e-8 (MNIST and natural32, b = 64, widths 200–1000),
while DP-SGD noise σ = 1e-6 (clip 1, b = 8) already leaves 2e-5 (σ = 1e-5: 2e-4)."""


def noise_limit(singular_values: torch.Tensor, d: int) -> float:
    """The gap above which a rank-``d`` problem is noise-limited: :data:`NOISE_LIMIT`, or no limit
    when ``σ_{d+1}/σ_1`` is at float32 rounding (:data:`ROUNDING_LEVEL`).

    Example:
        >>> noise_limit(torch.tensor([1.0, 1e-4, 1e-8]), 2), noise_limit(torch.tensor([1.0, 1e-4, 1e-5]), 2)
        (inf, 0.0001)
    """
    if len(singular_values) <= d or float(singular_values[d] / singular_values[0]) <= ROUNDING_LEVEL:
        return math.inf
    return NOISE_LIMIT

Replay = Callable[[torch.Tensor, torch.Tensor], tuple[float, float]]


@dataclass
class Verdict:
    """The outcome of :func:`verify` (relative residuals; ``violation`` per sample)."""

    complete: bool
    residual_w: float
    residual_b: float
    floor_w: float
    floor_b: float
    tolerance: float
    violation: torch.Tensor
    samples_ok: int
    X: torch.Tensor
    G: torch.Tensor
    noise_limited: bool = False

    def summary(self) -> dict[str, float | int | bool]:
        """The scalars, for ``Reconstruction.info``."""
        return {"complete": self.complete, "residual_w": self.residual_w, "residual_b": self.residual_b,
                "residual_floor_w": self.floor_w, "residual_floor_b": self.floor_b,
                "residual_tolerance": self.tolerance, "samples_verified": self.samples_ok,
                "worst_violation": float(self.violation.max()) if self.violation.numel() else 0.0,
                "noise_limited": self.noise_limited}


def tolerance_for(noise: float) -> float:
    """Relative residual an exact batch may leave, from the spectrum gap ``σ_{b+1}/σ_b``."""
    return max(1e-6, 10.0 * noise)


def margins(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, noise: float) -> torch.Tensor:
    """``(b, m)`` margins below which a pre-activation's sign is not trusted (its rounding)."""
    z = X @ weight.T + bias[None]
    return (max(noise, 1e-7) * z.abs().amax()).expand_as(z)


def verify(grad_w: torch.Tensor, grad_bias: torch.Tensor, L: torch.Tensor, R: torch.Tensor,
           q_hat: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, alive: torch.Tensor,
           noise: float = 0.0, replay: Replay | None = None, tolerance: float | None = None,
           limit: float = NOISE_LIMIT) -> Verdict:
    """Check whether directions ``q_hat`` (``(b, b)``, columns) give a batch that reproduces the
    observed ``grad_w`` (``(m, n)``) and ``grad_bias`` once the ReLU of its own inputs is applied.

    Args:
        noise: the spectrum gap ``σ_{b+1}/σ_b`` (sets the default tolerance and the margins).
        replay: for a FedAvg delta, ``replay(X, G)`` → relative residuals of the replayed update.
        tolerance: overrides :func:`tolerance_for`.
        limit: above this gap nothing is called complete (:func:`noise_limit`).
    """
    tol = tolerance if tolerance is not None else tolerance_for(noise)
    X, G = assemble(L, R, grad_bias, q_hat)
    finite = bool(torch.isfinite(X).all() and torch.isfinite(G).all())
    norm_w = grad_w.norm().clamp_min(1e-300)
    norm_b = grad_bias.norm().clamp_min(1e-300)
    floor_w = float((L @ R - grad_w).norm() / norm_w)
    floor_b = float((L @ (L.T @ grad_bias) - grad_bias).norm() / norm_b)
    z = X @ weight.T + bias[None]
    margin = margins(X, weight, bias, noise)
    if not finite:
        violation = torch.ones(X.shape[0], dtype=X.dtype)
        return Verdict(False, math.inf, math.inf, floor_w, floor_b, tol, violation, 0, X, G)
    if replay is None:
        off = (z < -margin) & alive[None]                                    # (b, m)
        kept = G.masked_fill(off.T, 0.0)
        res_w = float((kept @ X - grad_w).norm() / norm_w)
        res_b = float((kept.sum(1) - grad_bias).norm() / norm_b)
        violation = (G - kept).norm(dim=0) / G.norm(dim=0).clamp_min(1e-300)
        fits = res_w <= floor_w + max(1e-6, floor_w) and res_b <= floor_b + max(1e-6, floor_b)
    else:                        # one-sided: a zero of the column must be a neuron its input keeps off
        res_w, res_b = replay(X, G)
        zero = G.abs() <= tol * G.abs().amax(0, keepdim=True)
        on = ((z > margin) & alive[None]).T & zero                          # (m, b)
        violation = on.sum(0).to(X.dtype) / alive.sum().clamp_min(1)
        fits = max(res_w, res_b) <= max(1e-6, 10 * floor_w)
    ok = violation <= tol
    complete = bool(ok.all()) and fits and noise <= limit
    return Verdict(complete, res_w, res_b, floor_w, floor_b, tol, violation, int(ok.sum()), X, G,
                   noise > limit)


def keep_peeled(verdict: Verdict, duals: tuple[torch.Tensor, torch.Tensor], q_hat: torch.Tensor,
                 R: torch.Tensor, L: torch.Tensor) -> Verdict:
    """An incomplete batch whose first ``k`` samples were peeled: their inputs ``T_k R / s_k`` do
    not depend on the other (possibly wrong) directions, so they replace the assembled ones as
    the best estimate. Not counted as verified: a dual read from a gradient of float32
    precision through an ill-conditioned fit can be off by 1e-3 (measured, MNIST b=64)."""
    t, s = duals
    k = len(s)
    X, G = verdict.X.clone(), verdict.G.clone()
    X[:k] = (t @ R) / s[:, None]
    G[:, :k] = (L @ q_hat[:, :k]) * s[None]
    return replace(verdict, X=X, G=G)
