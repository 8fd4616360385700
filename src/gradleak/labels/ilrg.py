"""iLRG: instance-wise batch label restoration (Ma, Sun, Cui, Li, Guan, Liu; ICLR 2023).

Code: BUAA-CST/iLRG (not read); the arXiv id was not retrieved.

Threat model: honest-but-curious server with the current weights and a FedSGD gradient (or a
FedAvg delta read as the average gradient). Needs the last linear layer's weight *and* bias
gradients; no sign assumption on the features (works with Leaky ReLU / Swish per the paper).

Our reading of the method (the official code was not available to us): assume every sample
of class ``c`` shares one embedding ``e_c`` and softmax ``q_c``. Then, row by row,
``∂L/∂W_c = (1/K) Σ_j n_j (q_{j,c} − δ_{jc}) e_j`` and ``∂L/∂b_c = (1/K) Σ_j n_j (q_{j,c} − δ_{jc})``.

1. Class-wise embeddings: ``ê_c = (∂L/∂W_c) / (∂L/∂b_c)`` (exact for one sample).
2. Class-wise probabilities: ``q̂_c = softmax(W ê_c + b)``.
3. Counts: the minimum-norm least-squares solution (Moore–Penrose pseudo-inverse) of
   ``(Q̂ᵀ − I) n = K·∂L/∂b`` together with ``Σ n = K``; then rounding to integers summing to K.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(4, 1, 8, 8), torch.tensor([3, 3, 3, 8]))
    >>> restore_ilrg(model, update, shape=(1, 8, 8)).tolist()
    [3, 3, 3, 8]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradleak.core.types import ClientUpdate
from gradleak.labels.counts import check_applicable, counts_to_labels, last_layer_gradients, round_counts
from gradleak.models.layers import last_linear


def ilrg_raw_counts(weight_grad: torch.Tensor, bias_grad: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor, k: int) -> torch.Tensor:
    """Real-valued iLRG counts ``(C,)`` from the last layer's gradients and weights (float64).

    Example:
        >>> w, b = torch.eye(2), torch.zeros(2)
        >>> e = torch.tensor([[1.0, 0.0]])                  # one sample of class 1
        >>> p = torch.softmax(e @ w.T + b, -1)[0]
        >>> g = p - torch.tensor([0.0, 1.0])
        >>> (ilrg_raw_counts(g[:, None] * e, g, w, b, 1).round() + 0.0).tolist()
        [0.0, 1.0]
    """
    gw, gb = weight_grad.double(), bias_grad.double()
    w, b = weight.detach().double(), bias.detach().double()
    safe = torch.where(gb.abs() < 1e-12, torch.full_like(gb, 1e-12), gb)
    embeddings = gw / safe[:, None]                        # (C, M): row c is ê_c
    q = torch.softmax(embeddings @ w.T + b, dim=-1)       # (C, C): row c is q̂_c
    classes = len(gb)
    system = torch.cat([q.T - torch.eye(classes, dtype=q.dtype), torch.ones(1, classes, dtype=q.dtype)])
    rhs = torch.cat([k * gb, torch.tensor([float(k)], dtype=q.dtype)])
    return torch.linalg.pinv(system) @ rhs


def restore_ilrg(model: nn.Module, update: ClientUpdate, *, shape: Sequence[int]) -> torch.Tensor:
    """iLRG counts: class embeddings from weight/bias gradient ratios, then a pseudo-inverse solve.

    Needs a bias on the last linear layer; no sign assumption on the features.
    """
    check_applicable(model, update, "ilrg", shape=shape, nonnegative=False, needs_bias=True)
    weight_grad, bias_grad = last_layer_gradients(model, update)
    found = last_linear(model)
    assert found is not None and bias_grad is not None and found[1].bias is not None
    layer = found[1]
    k = update.num_examples
    raw = ilrg_raw_counts(weight_grad, bias_grad, layer.weight, layer.bias, k)
    return counts_to_labels(round_counts(raw, k))
