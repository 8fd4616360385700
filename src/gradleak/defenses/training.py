"""Defenses that change how the client trains (DP-SGD, MixUp) rather than what it sends.

A :class:`TrainingDefense` is passed to :func:`gradleak.fl.fedsgd_update` /
:func:`gradleak.fl.fedavg_update` as their ``trainer``; called on the finished update it only
records its spec (and public facts such as the privacy budget) so an adaptive attacker and
the report know it was used.

Example:
    >>> from gradleak.core.registry import create_defense
    >>> isinstance(create_defense("mixup", alpha=0.4), TrainingDefense)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gradleak.core.types import ClientUpdate, GroundTruth, LocalTraining
from gradleak.defenses.base import Defense
from gradleak.fl.client import local_sgd


class TrainingDefense(Defense):
    """Base of defenses that hook into local training (the ``trainer`` of ``fl``).

    Subclasses override :meth:`gradient` and :meth:`train`; :meth:`prepare_model` may refuse
    or convert the global model (e.g. BatchNorm under DP-SGD) and :meth:`client_truth` says
    what the attack should be scored against (e.g. MixUp's mixed inputs).
    """

    trains = True

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The global model this defense can train (the server distributes this one)."""
        return model

    def client_truth(self, truth: GroundTruth) -> GroundTruth:
        """What the client's update is actually computed from."""
        return truth

    def public_meta(self, update: ClientUpdate) -> Mapping[str, Any]:
        """Facts about this defense the server may know (e.g. ε), merged into ``update.meta``."""
        return {}

    def gradient(self, model: nn.Module, inputs: torch.Tensor,
                 labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The FedSGD gradient of the mean cross-entropy, keyed by parameter name."""
        params = dict(model.named_parameters())
        loss = F.cross_entropy(model(inputs), labels)
        return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))

    def train(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
              local: LocalTraining, *, seed: int = 0) -> nn.Module:
        """Local training in place (plain SGD unless overridden)."""
        return local_sgd(model, inputs, labels, local, seed=seed)

    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None) -> ClientUpdate:
        meta = dict(self.public_meta(update))
        if meta:
            update = replace(update, meta={**update.meta, **meta})
        return update.with_tensors(update.tensors, defense=self.spec)
