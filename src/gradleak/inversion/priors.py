"""Image priors: total variation (more come with later attacks).

Example:
    >>> import torch
    >>> float(total_variation(torch.zeros(1, 2, 1, 4, 4))[0])
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
        dx, dy = torch.diff(x, dim=-1), torch.diff(x, dim=-2)
        ctx.save_for_backward(dx.sign(), dy.sign())
        ctx.shape = x.shape
        tv = dx.abs().mean(dim=(-3, -2, -1)) + dy.abs().mean(dim=(-3, -2, -1))
        return tv.mean(dim=-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # d|x_w − x_{w−1}| / dx_w = s_w − s_{w+1} (s: the sign of each difference, 0 past the edges),
        # i.e. minus the difference of the zero-padded signs; each term scaled by its mean's 1/count
        sx, sy = ctx.saved_tensors
        (b, c, h, w), view = ctx.shape[-4:], (*grad.shape, 1, 1, 1, 1)
        out = torch.diff(F.pad(sx, (1, 1)), dim=-1).mul_((grad / -(b * c * h * (w - 1))).view(view))
        return out.addcmul_(torch.diff(F.pad(sy, (0, 0, 1, 1)), dim=-2), (grad / -(b * c * (h - 1) * w)).view(view))
