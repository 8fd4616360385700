"""Which labels an attack uses: the update's own (when they leak) or a restoration method.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(3, 1, 8, 8), torch.tensor([4, 4, 1]))
    >>> labels, how = resolve_labels(model, update, "restore", shape=(1, 8, 8))
    >>> labels.tolist(), how
    ([1, 4, 4], 'lsq')
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradleak.core.errors import ConfigError, NotApplicableError
from gradleak.core.registry import LABEL_METHODS
from gradleak.core.types import ClientUpdate
from gradleak.inversion.gradients import delta_problems
from gradleak.models.layers import last_linear

DEFAULT_BATCH_METHODS = ("lsq", "bias", "geng")
"""Tried in order by ``--labels restore`` (see bench/bench_labels.py for the measurements)."""


def resolve_labels(model: nn.Module, update: ClientUpdate, labels: str, *,
                   shape: Sequence[int]) -> tuple[torch.Tensor, str]:
    """The labels an attack uses, and how it got them.

    Args:
        labels: ``"known"`` (the update carries them), ``"restore"`` (the default method for
            the batch size: ``idlg`` for one sample, else the first of ``DEFAULT_BATCH_METHODS``
            that applies), ``"auto"`` (known when present, else restore) or a registered method name.
        shape: the client's input shape ``(C, H, W)`` (count methods forward dummy inputs of it).
    """
    if labels in ("known", "auto") and update.labels is not None:
        return update.labels.clone(), "known"
    if labels == "known":
        raise ConfigError(
            "--labels known needs labels in the update (the threat model where they leak); "
            "use --labels restore to infer them from the gradient"
        )
    if labels not in ("restore", "auto"):
        return LABEL_METHODS.get(labels)(model, update, shape=shape).long(), labels
    if update.num_examples == 1:
        try:
            return LABEL_METHODS.get("idlg")(model, update, shape=shape).long(), "idlg"
        except NotApplicableError:
            pass
    reasons = []
    for method in DEFAULT_BATCH_METHODS:
        try:
            return LABEL_METHODS.get(method)(model, update, shape=shape).long(), method
        except NotApplicableError as err:
            reasons.append(str(err))
    raise NotApplicableError("label restoration", reasons + ["use --labels known"])


def labels_available(model: nn.Module, update: ClientUpdate) -> list[str]:
    """Why labels can be neither read from the update nor restored (empty when they can)."""
    if update.labels is None and last_linear(model) is None:
        return ["labels are not in the update and the model has no nn.Linear layer to restore them from"]
    if update.labels is None and delta_problems(update):
        return [f"labels are not in the update and cannot be restored from it: {delta_problems(update)[0]}"]
    return []
