"""The next layer's shape of a true column: ``∂L/∂Z_i = mask_i ⊙ (W₂ᵀ δ_i)``.

When the ReLU after the attacked layer feeds a ``nn.Linear`` with ``k`` outputs (``W₂``, ``k × m``),
sample ``i``'s column of ``∂L/∂Z`` is ``mask_i ⊙ (W₂ᵀ δ_i)`` with ``δ_i = ∂L/∂(W₂ h_i + b₂)`` in
``R^k``. So on the rows where it is not zero (its support) a true column lies in the
``k``-dimensional span of ``W₂ᵀ`` restricted to those rows. For ``k`` much smaller than the
support (ten classes, hundreds of neurons) that is a sharp test: a spurious sparse combination of
several samples mixes different masks and is far from that span.

Why it matters (measured, issue 19): an untrained model's softmax is nearly uniform, so samples
with the *same label* have nearly the same ``δ``; an affine combination of two or three of them
is nearly zero on their common active rows as well as exactly zero on their common zero set. On
natural32 (whose neurons each fire for 1/8–7/8 of a batch, never for one sample only) the
sampling finds many such combinations, as sparse as true columns at the zero tolerance of a
float32 gradient (MNIST b=16 width 200 natural32: relative residual 0.92–0.96 for every spurious
direction, 4e-8–2e-7 for every true one). This is gradleak's; the paper tests sparsity only.

Only used for FedSGD gradients (a FedAvg delta sums several steps, each with its own ``W₂``).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> A = torch.randn(100, 3, generator=g, dtype=torch.float64)           # W₂ᵀ
    >>> masks = torch.rand(2, 100, generator=g) > 0.5
    >>> true = masks * (A @ torch.randn(3, 2, generator=g, dtype=torch.float64)).T
    >>> mixed = (true[0] + true[1])[None]
    >>> OutputSpan(A, zero=1e-9, threshold=1e-6)(torch.cat([true, mixed])).tolist()
    [True, True, False]
"""

from __future__ import annotations

import torch
from torch import nn

from gradleak.core.types import ClientUpdate


class OutputSpan:
    """Whether columns ``v`` (rows of ``V``, ``(c, m)``) lie in the span of ``A`` on their support.

    Args:
        A: ``W₂ᵀ`` ``(m, k)`` of the layer after the ReLU.
        zero: an entry is off the support when ``|v_j| <= zero · max|v|``.
        threshold: largest relative least-squares residual ``‖v_S − A_S e‖ / ‖v_S‖`` accepted.
    """

    def __init__(self, A: torch.Tensor, zero: float, threshold: float) -> None:
        self.A, self.zero, self.threshold = A.double(), zero, threshold

    def residuals(self, V: torch.Tensor) -> torch.Tensor:
        """The relative residual of each row of ``V`` ``(c,)``."""
        V = V.double()
        support = (V.abs() > self.zero * V.abs().amax(1, keepdim=True)).to(V.dtype)
        k = self.A.shape[1]
        gram = torch.einsum("cm,mi,mj->cij", support, self.A, self.A)
        gram = gram + 1e-12 * gram.diagonal(dim1=1, dim2=2).amax(1)[:, None, None] * torch.eye(k, dtype=V.dtype)
        rhs = (V * support) @ self.A
        e = torch.linalg.solve(gram, rhs[..., None])[..., 0]
        fit = (e @ self.A.T) * support
        return (V * support - fit).norm(dim=1) / (V * support).norm(dim=1).clamp_min(1e-300)

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        if len(V) == 0:
            return torch.zeros(0, dtype=torch.bool)
        return self.residuals(V) <= self.threshold


def next_layer_span(model: nn.Module, layer: nn.Linear, update: ClientUpdate, zero: float,
                    noise: float, live: int) -> OutputSpan | None:
    """The test of :class:`OutputSpan` when it applies: a FedSGD gradient, and the first layer's
    ReLU feeding a ``nn.Linear`` directly whose outputs are at most a quarter of the live rows."""
    if update.kind != "gradients":
        return None
    leaves = [m for m in model.modules() if not list(m.children())]
    at = next((k for k, m in enumerate(leaves) if m is layer), None)
    if at is None or at + 2 >= len(leaves):
        return None
    relu, nxt = leaves[at + 1], leaves[at + 2]
    if (not isinstance(relu, nn.ReLU) or not isinstance(nxt, nn.Linear) or nxt.in_features != layer.out_features
            or 4 * nxt.out_features > live):
        return None
    return OutputSpan(nxt.weight.detach().double().T, zero, min(0.3, max(1e-3, 300 * noise)))
