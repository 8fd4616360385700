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

import torch
from torch import nn

from gradleak.attacks.common.gradients import observed_gradient
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
    weight_grad, _ = last_layer_gradients(model, update)
    return weight_grad.sum(dim=1).argmin().reshape(1)


def batch_label_methods() -> list[str]:
    """Registered label methods other than the single-sample ``idlg``."""
    return [n for n in LABEL_METHODS.names() if n != "idlg"] or ["(none yet)"]


def resolve_labels(model: nn.Module, update: ClientUpdate, labels: str) -> tuple[torch.Tensor, str]:
    """The labels an attack uses, and how it got them.

    Args:
        labels: ``"known"`` (the update carries them), ``"restore"`` (the default method for
            the batch size: ``idlg`` for one sample), ``"auto"`` (known when present, else
            restore) or a registered method name.
    """
    if labels in ("known", "auto") and update.labels is not None:
        return update.labels.clone(), "known"
    if labels == "known":
        raise ConfigError(
            "--labels known needs labels in the update (the threat model where they leak); "
            "use --labels restore to infer them from the gradient"
        )
    method = labels
    if labels in ("restore", "auto"):
        method = "idlg" if update.num_examples == 1 else _default_batch_method()
    restored = LABEL_METHODS.get(method)(model, update)
    return restored.long(), method


def _default_batch_method() -> str:
    for name in ("ilrg", "geng", "llg", "yin"):
        if name in LABEL_METHODS:
            return name
    return "idlg"
