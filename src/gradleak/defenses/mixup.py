"""MixUp as a defense: the client trains on mixed samples.

Zhang, Cisse, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk Minimization" (ICLR 2018,
arXiv 1710.09412). The client draws ``λ ~ Beta(α, α)`` and a permutation ``π`` of its batch
(both from the seed) and trains on ``x̃ = λ·x + (1 − λ)·x_π`` with soft targets
``λ·onehot(y) + (1 − λ)·onehot(y_π)``. What an attacker can recover is ``x̃``, so that is the
ground truth the run is scored against (its label is the dominant component's). With one
sample there is nothing to mix and the update is the plain one (a warning is logged).
``alpha = 0`` disables mixing. Not evaluated in GGL.

Example:
    >>> import torch
    >>> from gradleak.core.types import GroundTruth
    >>> truth = GroundTruth(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    >>> mixed = MixUp(alpha=1.0, seed=0).client_truth(truth)
    >>> mixed.inputs.shape
    torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.types import GroundTruth, LocalTraining
from gradleak.defenses.training import TrainingDefense
from gradleak.fl.client import local_sgd
from gradleak.models.layers import last_linear

log = logging.getLogger(__name__)


def _num_classes(model: nn.Module, inputs: torch.Tensor) -> int:
    """Output width of the classifier (its last linear layer, else one forward pass on a copy)."""
    found = last_linear(model)
    if found is not None:
        return int(found[1].out_features)
    with torch.no_grad():
        return int(copy.deepcopy(model)(inputs[:1]).shape[-1])


class MixUp(TrainingDefense):
    """Train on convex combinations of pairs of the client's samples.

    Args:
        alpha: Beta(α, α) parameter of the mixing weight (0 disables mixing).
        seed: seeds λ and the pairing (filled in by ``build_defenses``).

    Raises:
        ConfigError: ``alpha`` negative or not finite.
    """

    name = "mixup"
    takes_seed = True

    def __init__(self, *, alpha: float = 1.0, seed: int = 0) -> None:
        if not (isinstance(alpha, (int, float)) and alpha >= 0 and math.isfinite(alpha)):
            raise ConfigError(f"mixup: alpha must be a finite number >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self._seed = int(seed)

    def mixing(self, n: int) -> tuple[float, torch.Tensor]:
        """The seeded ``(λ, π)`` for a batch of ``n`` samples."""
        if n < 2:
            log.warning("mixup: a batch of one sample has nothing to mix; the update is the plain one")
        rng = np.random.default_rng(self._seed)
        lam = float(rng.beta(self.alpha, self.alpha)) if self.alpha > 0 else 1.0
        perm = torch.as_tensor(rng.permutation(n), dtype=torch.int64)
        return lam, perm

    def mix(self, inputs: torch.Tensor, labels: torch.Tensor,
            num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed inputs and soft targets ``(B, num_classes)``."""
        lam, perm = self.mixing(int(inputs.shape[0]))
        perm = perm.to(inputs.device)
        onehot = F.one_hot(labels, num_classes).to(inputs.dtype)
        return lam * inputs + (1 - lam) * inputs[perm], lam * onehot + (1 - lam) * onehot[perm]

    def client_truth(self, truth: GroundTruth) -> GroundTruth:
        lam, perm = self.mixing(int(truth.inputs.shape[0]))
        perm = perm.to(truth.inputs.device)
        labels = truth.labels if lam >= 0.5 else truth.labels[perm]
        return GroundTruth(lam * truth.inputs + (1 - lam) * truth.inputs[perm], labels.clone())

    def gradient(self, model: nn.Module, inputs: torch.Tensor,
                 labels: torch.Tensor) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        lam, perm = self.mixing(int(inputs.shape[0]))
        perm = perm.to(inputs.device)
        logits = model(lam * inputs + (1 - lam) * inputs[perm])
        loss = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, labels[perm])
        return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))

    def train(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
              local: LocalTraining, *, seed: int = 0) -> nn.Module:
        x, target = self.mix(inputs, labels, _num_classes(model, inputs))
        return local_sgd(model, x, target, local, seed=seed)
