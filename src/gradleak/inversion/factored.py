"""A Linear layer's per-row weight gradients held as their factors, never built (the ghost-norm identities).

Row ``k``'s weight gradient of a Linear layer is ``G_k = Σ_s δ_ks a_ksᵀ`` over its samples ``s``
(output gradients ``δ``, inputs ``a``). A gradient distance needs of ``G_k`` only its inner product
with the target ``T`` and its squared norm, and both follow from the factors without building the
``(K, out, in)`` tensor (the identities behind "ghost clipping" in differentially private training):

* ``<G_k, T> = Σ_s δ_ksᵀ T a_ks`` — one batched product with the target;
* ``‖G_k‖² = Σ_{s,s'} (δ_ks·δ_ks')(a_ks·a_ks')`` — two small Gram matrices (``‖δ‖²‖a‖²`` for one sample).

When many rows are matched at once (``Attack.run_many``) the layer's gradients are ``K`` times the
size of the weight and are read and written half a dozen times a step (forward and back); the
factors touch the target twice and nothing else of that size. Autograd differentiates the
identities like any other ops.

Example:
    >>> import torch
    >>> d, a = torch.randn(4, 2, 3), torch.randn(4, 2, 5)      # K=4 rows, 2 samples, 3 outputs, 5 inputs
    >>> f = Factored(d, a)
    >>> t = torch.randn(2, 15)                                  # N=2 clients (2 rows each)
    >>> dot, sq = f.dot_and_square(t)
    >>> full = f.materialise().reshape(2, 2, 15)
    >>> bool(torch.allclose(dot, (full * t[:, None]).sum(-1).reshape(4), atol=1e-5))
    True
    >>> bool(torch.allclose(sq, full.square().sum(-1).reshape(4), atol=1e-4))
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Factored:
    """Per-row weight gradients ``G_k = Σ_s d[k, s] a[k, s]ᵀ`` of one Linear layer.

    Args:
        d: output gradients ``(K, S, out)``.
        a: inputs ``(K, S, in)``.
    """

    d: torch.Tensor
    a: torch.Tensor

    @property
    def rows(self) -> int:
        """``K``."""
        return self.d.shape[0]

    def materialise(self) -> torch.Tensor:
        """The gradients themselves, ``(K, out, in)``."""
        return torch.bmm(self.d.transpose(1, 2), self.a)

    def __add__(self, other: Factored) -> Factored:
        """The sum of two calls of the layer: their samples side by side."""
        return Factored(torch.cat([self.d, other.d], 1), torch.cat([self.a, other.a], 1))

    def dot_and_square(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(<G_k, T_c(k)>, ‖G_k‖²)`` per row, ``(K,)`` each, against ``target (N, out·in)``: one target
        per client, rows grouped by client (``K / N`` consecutive rows each)."""
        k, s, o = self.d.shape
        n = target.shape[0]
        t = target.view(n, o, -1)                                                   # (N, out, in)
        proj = torch.bmm(self.a.reshape(n, (k // n) * s, -1), t.transpose(1, 2))  # (N, R·S, out): T a
        dot = torch.linalg.vecdot(proj.reshape(k, s * o), self.d.reshape(k, s * o))
        if s == 1:
            sq = self.d.reshape(k, o).square().sum(1) * self.a.reshape(k, -1).square().sum(1)
        else:
            sq = (torch.bmm(self.d, self.d.transpose(1, 2)) * torch.bmm(self.a, self.a.transpose(1, 2))).sum((1, 2))
        return dot, sq
