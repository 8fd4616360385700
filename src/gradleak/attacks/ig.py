"""Inverting Gradients (Geiping, Bauermeister, Dröge, Moeller; NeurIPS 2020; arXiv 2003.14053).

Threat model: honest-but-curious server with the model's weights and one FedSGD gradient
(or a one-step FedAvg delta, read as ``-delta / lr``; several steps give an average gradient).
Needs: the labels (known, or restored — iDLG for one sample), the batch size (from
``num_examples``). Works on any differentiable model; no ReLU, bias or BN assumption.

Objective: ``1 − cos(∇θ L(x, y), g*) + α_TV · TV(x)``, minimised with Adam on the *sign*
of the gradient, step decay ×0.1 at 3/8, 5/8, 7/8, pixels boxed to ``[0, 1]``; ``restarts``
independent starts run as one batched tensor and the lowest final loss is kept.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(1, 1, 8, 8), torch.tensor([2]))
    >>> rec = InvertingGradients(steps=20).run(model, update, shape=(1, 8, 8))
    >>> rec.inputs.shape, rec.labels.tolist()
    (torch.Size([1, 1, 8, 8]), [2])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradleak.attacks.base import Attack, Progress, attack_generator
from gradleak.attacks.common.gradients import TrialTransform, observed_gradient, trial_gradients
from gradleak.attacks.common.labels import resolve_labels
from gradleak.attacks.common.losses import DISTANCES
from gradleak.attacks.common.optimize import best_restart, optimise_inputs
from gradleak.attacks.common.priors import total_variation
from gradleak.errors import ConfigError
from gradleak.registry import register_attack
from gradleak.types import ClientUpdate, Reconstruction


@register_attack("ig")
class InvertingGradients(Attack):
    """Inverting Gradients: cosine gradient matching + TV, signed Adam, batched restarts.

    Args:
        steps: Adam steps (the paper: 4800 on CIFAR-10, 24000 on ImageNet).
        lr: Adam learning rate in pixel units.
        tv: weight of total variation.
        restarts: independent random starts, optimised together.
        distance: ``cosine`` (the paper) or ``l2``.
        signed: use the sign of the gradient (the paper's choice).
        labels: ``auto``, ``known``, ``restore`` or a label method name.
        seed: seeds the random starts.
        transform: an adaptive attacker's copy of the defense applied to trial gradients.
    """

    name = "ig"

    def __init__(self, *, steps: int = 1000, lr: float = 0.1, tv: float = 1e-2, restarts: int = 1,
                 distance: str = "cosine", signed: bool = True, labels: str = "auto", seed: int = 0,
                 transform: TrialTransform | None = None) -> None:
        problems = []
        if steps < 1:
            problems.append(f"steps must be >= 1, got {steps}")
        if restarts < 1:
            problems.append(f"restarts must be >= 1, got {restarts}")
        if not lr > 0:
            problems.append(f"lr must be > 0, got {lr}")
        if tv < 0:
            problems.append(f"tv must be >= 0, got {tv}")
        if distance not in DISTANCES:
            problems.append(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
        if problems:
            raise ConfigError("ig: " + "; ".join(problems))
        self.steps, self.lr, self.tv, self.restarts = steps, lr, tv, restarts
        self.distance, self.signed, self.labels, self.seed = distance, signed, labels, seed
        self.transform = transform

    def reconstruct(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
                    progress: Progress | None = None) -> Reconstruction:
        target = observed_gradient(model, update)
        labels, how = resolve_labels(model, update, self.labels, shape=shape)
        b, r = update.num_examples, self.restarts
        y = labels.expand(r, b)
        dist = DISTANCES[self.distance]

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            trial = trial_gradients(model, x, y, self.transform)
            return dist(trial, target) + self.tv * total_variation(x)

        x0 = torch.rand((r, b, *shape), generator=attack_generator(self.seed))
        x, history = optimise_inputs(loss_fn, x0, steps=self.steps, lr=self.lr,
                                     signed=self.signed, progress=progress)
        best, final = best_restart(loss_fn, x)
        return Reconstruction(x[best], labels, history[best],
                              info={"labels_from": how, "best_restart": best, "final_loss": final})
