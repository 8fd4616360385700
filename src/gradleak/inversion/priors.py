"""Image priors: total variation (more come with later attacks).

Example:
    >>> import torch
    >>> float(total_variation(torch.zeros(1, 2, 1, 4, 4))[0])
    0.0
"""

from __future__ import annotations

import torch


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV, mean absolute neighbour difference, per leading index.

    Args:
        x: ``(R, B, C, H, W)``; returns ``(R,)`` (mean over the batch of each restart).

    The value and its gradient are fused (:class:`_TotalVariation`: a handful of kernels instead of
    the two dozen of an op-by-op graph, which matters when a step is a few milliseconds);
    differentiable once, as matching needs.
    """
    return _TotalVariation.apply(x)


class _TotalVariation(torch.autograd.Function):
    """``mean|∂x/∂w| + mean|∂x/∂h|`` over (C, H, W), averaged over the batch dim; ``sign`` as the subgradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        dx = x[..., :, 1:] - x[..., :, :-1]
        dy = x[..., 1:, :] - x[..., :-1, :]
        ctx.save_for_backward(dx.sign(), dy.sign())
        ctx.shape = x.shape
        tv = dx.abs().mean(dim=(-3, -2, -1)) + dy.abs().mean(dim=(-3, -2, -1))
        return tv.mean(dim=-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        sx, sy = ctx.saved_tensors
        shape = ctx.shape
        per = grad.reshape(*grad.shape, 1, 1, 1, 1) / shape[-4]  # d mean over the batch
        gx = sx * (per / (sx.shape[-3] * sx.shape[-2] * sx.shape[-1]))
        gy = sy * (per / (sy.shape[-3] * sy.shape[-2] * sy.shape[-1]))
        out = torch.zeros(shape, dtype=gx.dtype, device=gx.device)
        out[..., :, 1:] += gx
        out[..., :, :-1] -= gx
        out[..., 1:, :] += gy
        out[..., :-1, :] -= gy
        return out
