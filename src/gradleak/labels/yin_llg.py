"""Sign-based batch label restoration: GradInversion's ``yin`` and Wainakh et al.'s ``llg``.

* ``yin`` — Yin et al., *See through Gradients: Image Batch Recovery via GradInversion*,
  CVPR 2021 (arXiv 2104.07586): the ``K`` classes whose last-layer weight-gradient rows have
  the most negative minimum. Assumes ``K`` distinct labels (``K ≤`` classes).
* ``llg`` — Wainakh, Ventola, Müßig, Keim, Garcia Cordero, Zimmer, Grube, Kersting, Mühlhäuser,
  *User-Level Label Leakage from Gradients in Federated Learning*, PETS 2022 (arXiv 2105.09369):
  every class with a negative row sum is present; the per-instance impact ``m`` is the sum of
  the negative row sums divided by ``K``, times ``(1 + 1/C)`` for ``C`` classes (the factor of
  the official code, tklab-tud/LLG ``Predictor.v1_prediction``; it is not in the paper's
  text); then, repeatedly, the class with the most negative (already corrected) row sum gets
  one more instance and ``m`` is subtracted from its row, until ``K`` labels are drawn. Where
  there are more negative rows than ``K``, only the ``K`` most negative are taken (gradleak's
  choice: the official code takes them all and returns more than ``K`` labels).

Both need non-negative inputs to the last linear layer (ReLU/sigmoid features) and read the
update as a gradient (FedAvg deltas become the average gradient).

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(3, 1, 8, 8), torch.tensor([1, 4, 7]))
    >>> restore_yin(model, update, shape=(1, 8, 8)).tolist()
    [1, 4, 7]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradleak.core.errors import NotApplicableError
from gradleak.core.types import ClientUpdate
from gradleak.labels.counts import check_applicable, counts_to_labels, last_layer_gradients

_COUNT_METHODS = ("geng", "ilrg", "bias", "llg", "dimitrov")


def restore_yin(model: nn.Module, update: ClientUpdate, *, shape: Sequence[int]) -> torch.Tensor:
    """GradInversion's label rule: the ``K`` most negative row minima (distinct labels only).

    Needs non-negative features into the last linear layer (ReLU/sigmoid) and K distinct labels.
    """
    check_applicable(model, update, "yin", shape=shape, nonnegative=True, alternatives=("bias", "ilrg"))
    weight_grad, _ = last_layer_gradients(model, update)
    k, classes = update.num_examples, weight_grad.shape[0]
    if k > classes:
        raise NotApplicableError(
            "label method 'yin'",
            [f"it assumes distinct labels, so at most {classes} examples, the update has {k}; "
             f"use a count method: {', '.join(_COUNT_METHODS)}"])
    chosen = weight_grad.min(dim=1).values.argsort()[:k]
    return chosen.sort().values


def restore_llg(model: nn.Module, update: ClientUpdate, *, shape: Sequence[int]) -> torch.Tensor:
    """LLG: existence from negative row sums, counts by greedy subtract-and-reselect of the impact.

    Needs non-negative features into the last linear layer (ReLU/sigmoid).
    """
    check_applicable(model, update, "llg", shape=shape, nonnegative=True, alternatives=("bias", "ilrg"))
    weight_grad, _ = last_layer_gradients(model, update)
    return llg_counts(weight_grad.sum(dim=1), update.num_examples)


def llg_counts(row_sums: torch.Tensor, k: int) -> torch.Tensor:
    """The LLG loop on row sums ``(C,)`` for ``k`` examples; returns sorted labels ``(k,)``.

    The impact is ``(Σ negative row sums / k) · (1 + 1/C)``, as in the official code.

    Example:
        >>> llg_counts(torch.tensor([-0.3, 0.1, -0.1, 0.3]), 4).tolist()
        [0, 0, 0, 2]
    """
    r = row_sums.detach().double().clone()
    negative = (r < 0).nonzero().flatten()
    impact = float(r[negative].sum()) / k * (1 + 1 / len(r)) if len(negative) else 0.0
    counts = torch.zeros(len(r), dtype=torch.long)
    for c in r[negative].argsort()[:k]:  # the most negative first when there are more than k
        idx = negative[c]
        counts[idx] += 1
        r[idx] -= impact
    while int(counts.sum()) < k:
        idx = int(r.argmin())
        counts[idx] += 1
        r[idx] -= impact
    return counts_to_labels(counts)
