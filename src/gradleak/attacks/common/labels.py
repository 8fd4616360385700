"""Label restoration from the last linear layer's gradient.

Methods are registered in ``LABEL_METHODS`` as ``fn(model, update) -> labels (B,)``;
``resolve_labels`` picks known labels or a restoration method.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(1, 1, 8, 8), torch.tensor([7]))
    >>> restore_idlg(model, update).tolist()
    [7]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from gradleak.attacks.common.gradients import observed_gradient
from gradleak.attacks.common.label_counts import check_applicable
from gradleak.errors import ConfigError, NotApplicableError
from gradleak.models.layers import last_linear
from gradleak.registry import LABEL_METHODS, register_label_method
from gradleak.types import ClientUpdate


def last_layer_gradients(model: nn.Module, update: ClientUpdate) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The observed gradient of the last linear layer's weight ``(N, M)`` and bias ``(N,)``."""
    found = last_linear(model)
    if found is None:
        raise NotApplicableError("label restoration", ["the model has no nn.Linear layer"])
    prefix = f"{found[0]}." if found[0] else ""
    names = [n for n, _ in model.named_parameters()]
    grads = dict(zip(names, observed_gradient(model, update)))
    return grads[prefix + "weight"], grads.get(prefix + "bias")


@register_label_method("idlg")
def restore_idlg(model: nn.Module, update: ClientUpdate) -> torch.Tensor:
    """iDLG (Zhao et al. 2020): for one sample, the only negative row of the last weight gradient.

    Needs batch size 1 and non-negative inputs to the last layer (ReLU/sigmoid features).
    """
    if update.num_examples != 1:
        raise NotApplicableError(
            "label method 'idlg'",
            [f"it needs batch size 1, the update has {update.num_examples} examples; "
             f"use --labels known or a batch method ({', '.join(batch_label_methods())})"],
        )
    check_applicable(model, update, "idlg", nonnegative=True, alternatives=("lsq", "bias", "ilrg"))
    weight_grad, _ = last_layer_gradients(model, update)
    return weight_grad.sum(dim=1).argmin().reshape(1)


def batch_label_methods() -> list[str]:
    """Registered label methods other than the single-sample ``idlg``."""
    return [n for n in LABEL_METHODS.names() if n != "idlg"] or ["(none yet)"]


def resolve_labels(model: nn.Module, update: ClientUpdate, labels: str,
                   shape: Sequence[int] | None = None) -> tuple[torch.Tensor, str]:
    """The labels an attack uses, and how it got them.

    Args:
        labels: ``"known"`` (the update carries them), ``"restore"`` (the default method for
            the batch size: ``idlg`` for one sample, else the first of ``DEFAULT_BATCH_METHODS``
            that applies), ``"auto"`` (known when present, else restore) or a registered method name.
        shape: the input shape ``(C, H, W)`` when the caller knows it (count methods forward
            dummy inputs; without it the shape is probed from the model).
    """
    if shape is not None:
        update = replace(update, meta={**update.meta, "input_shape": tuple(int(s) for s in shape)})
    if labels in ("known", "auto") and update.labels is not None:
        return update.labels.clone(), "known"
    if labels == "known":
        raise ConfigError(
            "--labels known needs labels in the update (the threat model where they leak); "
            "use --labels restore to infer them from the gradient"
        )
    if labels not in ("restore", "auto"):
        return LABEL_METHODS.get(labels)(model, update).long(), labels
    if update.num_examples == 1:
        try:
            return LABEL_METHODS.get("idlg")(model, update).long(), "idlg"
        except NotApplicableError:
            pass
    reasons = []
    for method in DEFAULT_BATCH_METHODS:
        try:
            return LABEL_METHODS.get(method)(model, update).long(), method
        except NotApplicableError as err:
            reasons.append(str(err))
    raise NotApplicableError("label restoration", reasons + ["use --labels known"])


DEFAULT_BATCH_METHODS = ("lsq", "bias", "geng")
"""Tried in order by ``--labels restore`` (see bench/bench_labels.py for the measurements)."""


def labels_available(model: nn.Module, update: ClientUpdate) -> list[str]:
    """Why labels can be neither read from the update nor restored (empty when they can)."""
    if update.labels is None and last_linear(model) is None:
        return ["labels are not in the update and the model has no nn.Linear layer to restore them from"]
    return []


# Batch label methods live in their own modules; importing them here registers them.
from gradleak.attacks.common import label_geng, label_ilrg, label_lsq, label_yin_llg  # noqa: E402, F401
