"""A FedAvg weight delta read as a sum of gradients, with the optimiser's own drift removed.

SPEAR needs the layer's update to have rank ``b``: every step's gradient is ``G_t X`` for the
same inputs, so any weighted sum of them is. Weight decay (and FedProx's pull) add terms in the
*weights*, which are full rank: reading the delta as ``−ΔW/(lr·T_eff) − wd·W₀``
(:func:`~gradleak.inversion.gradients.average_gradient`) is exact for one step, but after several
steps the decay acts on moving weights and leaves a full-rank remainder of size about
``wd · lr · T · |W₀|`` (measured: MNIST 8×8, b=6, 5 steps of SGD, wd 1e-2: 4 of 6 samples).

Every optimiser SPEAR accepts (SGD with momentum, Nesterov, weight decay, FedProx) is linear
in the weights and gradients, so the delta splits exactly into the path the start weights take
with *zero* gradients (:func:`drift`, computed here with the client's optimiser) plus a
weighted sum of the step gradients. Removing the first leaves a rank-``b`` matrix; dividing by
``−lr · T_eff`` keeps it on the average gradient's scale (the weights of the sum differ from
1 by ``O(lr · wd)``; SPEAR's directions do not depend on the scale of each step).

Example:
    >>> import torch
    >>> from gradleak.core.types import LocalTraining
    >>> d = drift(torch.ones(2, dtype=torch.float64), LocalTraining(lr=0.1, steps=2, weight_decay=0.5), 4)
    >>> [round(v, 6) for v in d.tolist()]            # (1 - 0.1 * 0.5)² - 1
    [-0.0975, -0.0975]
"""

from __future__ import annotations

import torch

from gradleak.core.types import ClientUpdate, LocalTraining
from gradleak.inversion.gradients import delta_scale
from gradleak.inversion.unroll import optimiser_step


def drift(start: torch.Tensor, local: LocalTraining, num_examples: int) -> torch.Tensor:
    """How far the client's optimiser moves ``start`` in its local steps when every gradient is 0."""
    if not (local.weight_decay or local.prox_mu):
        return torch.zeros_like(start)
    p, zero, state = {"p": start}, {"p": torch.zeros_like(start)}, {}
    for step in range(1, local.num_steps(num_examples) + 1):
        p = optimiser_step(p, zero, {"p": start}, local, state, step)
    return p["p"] - start


def delta_gradient(update: ClientUpdate, name: str, start: torch.Tensor) -> torch.Tensor:
    """Parameter ``name``'s update in float64 on the average gradient's scale (see the module)."""
    tensor = update.tensors[name].detach().double()
    if update.kind != "weight_delta":
        return tensor
    local = update.local_training
    assert local is not None  # guaranteed by ClientUpdate for a weight delta
    return (tensor - drift(start.detach().double(), local, update.num_examples)) * delta_scale(update)
