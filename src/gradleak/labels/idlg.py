"""iDLG's label rule (Zhao, Mopuri, Bilen; 2020; arXiv 2001.02610): one sample, one negative row.

For a single sample and non-negative inputs to the last linear layer (ReLU/sigmoid features),
the row of the last weight gradient belonging to the true class is the only one whose sum is
negative.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(1, 1, 8, 8), torch.tensor([7]))
    >>> restore_idlg(model, update, shape=(1, 8, 8)).tolist()
    [7]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradleak.core.errors import NotApplicableError
from gradleak.core.types import ClientUpdate
from gradleak.labels.counts import check_applicable, last_layer_gradients

BATCH_METHODS = ("lsq", "bias", "geng", "ilrg", "llg", "yin", "dimitrov")
"""The built-in methods for batches of more than one example."""


def restore_idlg(model: nn.Module, update: ClientUpdate, *, shape: Sequence[int]) -> torch.Tensor:
    """iDLG (Zhao et al. 2020): for one sample, the only negative row of the last weight gradient.

    Needs batch size 1 and non-negative inputs to the last layer (ReLU/sigmoid features).
    """
    if update.num_examples != 1:
        raise NotApplicableError(
            "label method 'idlg'",
            [f"it needs batch size 1, the update has {update.num_examples} examples; "
             f"use --labels known or a batch method ({', '.join(sorted(BATCH_METHODS))})"],
        )
    check_applicable(model, update, "idlg", shape=shape, nonnegative=True, alternatives=("lsq", "bias", "ilrg"))
    weight_grad, _ = last_layer_gradients(model, update)
    return weight_grad.sum(dim=1).argmin().reshape(1)
