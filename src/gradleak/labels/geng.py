"""Zero-shot label *counts*: Geng et al. 2021, the bias variant, and Dimitrov et al.'s FedAvg refinement.

* ``geng`` — Geng, Mou, Li, Li, Beyan, Decker, Rong, *Towards General Deep Leakage in Federated
  Learning* (arXiv 2110.09074, 2021). With ``ΔW_n = Σ_m ∂L/∂W_{n,m}`` the row sums of the last
  layer's weight gradient, ``count_n ≈ K·p̄_n − K·ΔW_n / Ô``, where the mean softmax ``p̄`` and
  the mean sum of the last layer's input features ``Ô`` come from dummy inputs through the
  current model. Needs non-negative features (ReLU/sigmoid) and an (early-training) model
  whose outputs on dummy data resemble those on real data.
* ``bias`` — ``count_n = K·(p̄_n − ∂L/∂b_n)``: exact up to ``p̄`` when the last layer has a bias
  (an ablation derived from the same identity); no sign assumption.
* ``dimitrov`` — Dimitrov, Balunović, Konstantinov, Vechev, *Data Leakage in Federated
  Averaging* (TMLR 2022, arXiv 2206.12395): for a FedAvg delta after ``T`` local steps, ``p̄`` and
  ``Ô`` are computed at weights interpolated linearly between the start ``W₀`` and the end
  ``W₀ + Δ``, the Geng counts of every step are averaged and then rounded. On a FedSGD
  gradient it equals ``geng``.

All read FedAvg updates as the average gradient ``−Δ / (lr·T)``; ``K`` is ``num_examples``.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(4, 1, 8, 8), torch.tensor([2, 2, 5, 9]))
    >>> restore_geng(model, update, shape=(1, 8, 8)).tolist()
    [2, 2, 5, 9]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradleak.core.types import ClientUpdate
from gradleak.labels.counts import (
    check_applicable,
    counts_to_labels,
    dummy_statistics,
    last_layer_gradients,
    round_counts,
)

INTERPOLATION_POINTS = 16
"""At most this many interpolated weights along the local trajectory (``dimitrov``)."""


def geng_raw_counts(row_sums: torch.Tensor, p_mean: torch.Tensor, o_hat: float, k: int) -> torch.Tensor:
    """Real-valued Geng counts ``K·p̄ − K·ΔW / Ô`` (``(C,)``, float64).

    Example:
        >>> geng_raw_counts(torch.tensor([-0.5, 0.5]), torch.tensor([0.5, 0.5]), 1.0, 2).tolist()
        [2.0, 0.0]
    """
    return k * p_mean.double() - k * row_sums.double() / max(o_hat, 1e-12)


def restore_geng(model: nn.Module, update: ClientUpdate, *, shape: Sequence[int]) -> torch.Tensor:
    """Geng et al.'s zero-shot count restoration (dummy ``p̄`` and ``Ô`` at the current weights).

    Needs non-negative features into the last linear layer (ReLU/sigmoid) and dummy outputs that resemble real ones.
    """
    shape = check_applicable(model, update, "geng", shape=shape, nonnegative=True, alternatives=("bias", "ilrg"))
    weight_grad, _ = last_layer_gradients(model, update)
    stats = dummy_statistics(model, shape)
    k = update.num_examples
    raw = geng_raw_counts(weight_grad.sum(dim=1), stats.p_mean, stats.o_hat, k)
    return counts_to_labels(round_counts(raw, k))


def restore_bias(model: nn.Module, update: ClientUpdate, *, shape: Sequence[int]) -> torch.Tensor:
    """Counts from the bias gradient, ``K·(p̄ − ∂L/∂b)``, with ``p̄`` from dummy inputs.

    Needs a bias on the last linear layer; no sign assumption on the features.
    """
    shape = check_applicable(model, update, "bias", shape=shape, nonnegative=False, needs_bias=True)
    _, bias_grad = last_layer_gradients(model, update)
    assert bias_grad is not None  # checked above
    stats = dummy_statistics(model, shape)
    k = update.num_examples
    return counts_to_labels(round_counts(k * (stats.p_mean - bias_grad.double()), k))


def restore_dimitrov(model: nn.Module, update: ClientUpdate, *, shape: Sequence[int]) -> torch.Tensor:
    """Geng counts averaged over weights interpolated from the start to the end of local training.

    Needs non-negative features into the last linear layer (ReLU/sigmoid); made for FedAvg deltas.
    """
    shape = check_applicable(model, update, "dimitrov", shape=shape, nonnegative=True, alternatives=("bias", "ilrg"))
    weight_grad, _ = last_layer_gradients(model, update)
    row_sums = weight_grad.sum(dim=1)
    k = update.num_examples
    if update.kind == "gradients":
        fractions = [0.0]
    else:
        assert update.local_training is not None
        steps = update.local_training.num_steps(k)
        points = min(steps, INTERPOLATION_POINTS)
        fractions = [i * steps // points / steps for i in range(points)]
    start = {n: p.detach() for n, p in model.named_parameters()}
    raw = torch.zeros_like(row_sums, dtype=torch.float64)
    for frac in fractions:
        params = {n: p + frac * update.tensors[n].to(p.dtype) for n, p in start.items()}
        stats = dummy_statistics(model, shape, params=params)
        raw += geng_raw_counts(row_sums, stats.p_mean, stats.o_hat, k)
    return counts_to_labels(round_counts(raw / len(fractions), k))
