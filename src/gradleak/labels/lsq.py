"""``lsq``: bias-gradient label counts with ``p̄`` fitted from the gradient itself (no dummy data).

A gradleak refinement of Geng et al. (arXiv 2110.09074) and its bias variant, measured in
``bench/bench_labels.py``. Geng's assumption is that every sample feeds (nearly) the same
features ``ō`` into the last linear layer. Under it the last layer's gradient rows are
``∂L/∂W_c ≈ (∂L/∂b_c) · ō``, so ``ō`` is the least-squares fit
``ō = Σ_c (∂L/∂b_c) ∂L/∂W_c / Σ_c (∂L/∂b_c)²`` — read off the update instead of guessed from
dummy inputs, whose features can differ a lot from real ones (MNIST: mostly black pixels).
Then ``p̄ = softmax(W ō + b)`` and, exactly as in ``bias``, ``count = K·(p̄ − ∂L/∂b)``.

A FedAvg delta is read as the average gradient, with ``p̄`` at the start weights (measured:
interpolating the last layer towards the end weights à la Dimitrov et al. made it worse).

Needs the last layer's bias; no sign assumption on the features.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(5, 1, 8, 8), torch.tensor([0, 0, 0, 6, 6]))
    >>> restore_lsq(model, update, shape=(1, 8, 8)).tolist()
    [0, 0, 0, 6, 6]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradleak.core.types import ClientUpdate
from gradleak.labels.counts import check_applicable, counts_to_labels, last_layer_gradients, round_counts
from gradleak.models.layers import last_linear


def mean_embedding(weight_grad: torch.Tensor, bias_grad: torch.Tensor) -> torch.Tensor:
    """Least-squares ``ō`` with ``∂L/∂W_c ≈ (∂L/∂b_c) ō`` (float64, ``(M,)``).

    Example:
        >>> o = torch.tensor([1.0, 2.0]); gb = torch.tensor([0.3, -0.3])
        >>> mean_embedding(gb[:, None] * o, gb).tolist()
        [1.0, 2.0]
    """
    gw, gb = weight_grad.double(), bias_grad.double()
    return (gb[:, None] * gw).sum(0) / (gb * gb).sum().clamp(min=1e-30)


def restore_lsq(model: nn.Module, update: ClientUpdate, *, shape: Sequence[int]) -> torch.Tensor:
    """Counts ``K·(softmax(W ō + b) − ∂L/∂b)`` with ``ō`` fitted from the gradient.

    Needs a bias on the last linear layer; no sign assumption on the features.
    """
    check_applicable(model, update, "lsq", shape=shape, nonnegative=False, needs_bias=True)
    weight_grad, bias_grad = last_layer_gradients(model, update)
    found = last_linear(model)
    assert found is not None and bias_grad is not None and found[1].bias is not None
    w0, b0 = found[1].weight.detach().double(), found[1].bias.detach().double()
    p_mean = torch.softmax(mean_embedding(weight_grad, bias_grad) @ w0.T + b0, -1)
    k = update.num_examples
    return counts_to_labels(round_counts(k * (p_mean - bias_grad.double()), k))
