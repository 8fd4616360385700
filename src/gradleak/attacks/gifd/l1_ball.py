"""Exact Euclidean projection onto the l1 ball, batched per sample.

Duchi, Shalev-Shwartz, Singer, Chandra, "Efficient Projections onto the l1-Ball for Learning in
High Dimensions" (ICML 2008), Figure 1: sort ``|v|`` in decreasing order ``u``, take
``ρ = max{j : u_j − (Σ_{i≤j} u_i − r) / j > 0}`` and ``θ = (Σ_{i≤ρ} u_i − r) / ρ``; the projection
is the soft threshold ``sign(v) · max(|v| − θ, 0)``. Rows already inside the ball are returned
unchanged. GIFD (Fang et al., ICCV 2023, arXiv 2308.04699) confines each intermediate feature of
the generator to such a ball around where the previous stage left it.

Example:
    >>> import torch
    >>> v = torch.tensor([[3.0, -1.0, 0.5], [0.1, 0.1, 0.0]])
    >>> project_l1_ball(v, 2.0).abs().tolist()
    [[2.0, 0.0, 0.0], [0.10000000149011612, 0.10000000149011612, 0.0]]
    >>> float(project_l1_ball(torch.randn(4, 100), 5.0).abs().sum(1).max()) <= 5.0 + 1e-4
    True
"""

from __future__ import annotations

import torch

from gradleak.core.errors import ConfigError


def l1_threshold(v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """The soft threshold ``θ ≥ 0`` per row of ``v (N, D)`` for radii ``(N,)`` (0 inside the ball)."""
    u = v.abs().sort(dim=1, descending=True).values
    css = u.cumsum(dim=1) - radius[:, None]
    j = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    rho = (u - css / j > 0).to(v.dtype).mul(j).argmax(dim=1, keepdim=True)  # last index where it holds
    theta = css.gather(1, rho).squeeze(1) / (rho.squeeze(1) + 1).to(v.dtype)
    inside = u.sum(dim=1) <= radius
    return torch.where(inside, torch.zeros_like(theta), theta.clamp(min=0))


def project_l1_ball(v: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """Project each sample (first dim) of ``v`` onto ``{w : ‖w‖₁ ≤ radius}`` in the Euclidean norm.

    Args:
        v: ``(N, ...)``; every sample is flattened and projected independently.
        radius: a scalar or ``(N,)`` radii, each ``>= 0``.

    Returns:
        the projections, the shape of ``v``.

    Raises:
        ConfigError: a negative radius, or radii whose count is not ``N``.
    """
    n = v.shape[0]
    r = torch.as_tensor(radius, dtype=v.dtype, device=v.device).reshape(-1)
    if r.numel() == 1:
        r = r.expand(n)
    if r.numel() != n:
        raise ConfigError(f"project_l1_ball: got {r.numel()} radii for {n} samples; pass one or N")
    if bool((r < 0).any()):
        raise ConfigError(f"project_l1_ball: radii must be >= 0, got min {float(r.min())}")
    flat = v.reshape(n, -1)
    if flat.shape[1] == 0:
        return v.clone()
    theta = l1_threshold(flat, r)
    out = flat.sign() * (flat.abs() - theta[:, None]).clamp(min=0)
    return out.reshape(v.shape)


def project_to_ball_around(h: torch.Tensor, center: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """``center + Π_{‖·‖₁ ≤ radius}(h − center)``: the nearest point of the ball around ``center``."""
    return center + project_l1_ball(h - center, radius)
