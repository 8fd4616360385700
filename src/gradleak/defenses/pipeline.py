"""Apply a list of defenses the way clients would, including training defenses and aggregation.

:func:`defend` builds the defenses from ``NAME:key=value`` specs, lets a training defense
(DP-SGD, MixUp) prepare the model and train, applies the update defenses in order, and — with
``aggregate:clients=N`` last — repeats all of it for ``N`` clients (client ``k`` with its own
batch and a seed derived from ``(seed, k)``; client 0 is the given batch and seed) before
combining. It returns the model the server knows, the update it sees, and the truth the
attack is scored against (MixUp's mixed inputs; all ``N×b`` images under aggregation).

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> from gradleak.core.types import GroundTruth
    >>> model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> truth = GroundTruth(torch.rand(1, 1, 8, 8), torch.tensor([3]))
    >>> make = lambda m, x, y, trainer: fedsgd_update(m, x, y, trainer=trainer)
    >>> out = defend(model, truth, ["clip:norm=1", "noise:sigma=0.01"], make, seed=0)
    >>> [d.split(":")[0] for d in out.update.defenses]
    ['clip', 'noise']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.types import ClientUpdate, GroundTruth
from gradleak.defenses.aggregate import SecureAggregation
from gradleak.defenses.base import build_defenses

MakeUpdate = Callable[[nn.Module, torch.Tensor, torch.Tensor, Any], ClientUpdate]
"""``make(model, inputs, labels, trainer) -> ClientUpdate``: one client's undefended update."""


@dataclass(frozen=True)
class Defended:
    """The model the server knows, the update it sees, and the truth behind that update."""

    model: nn.Module
    update: ClientUpdate
    truth: GroundTruth
    clients: int = 1


def client_seed(seed: int, k: int) -> int:
    """The seed of client ``k`` (client 0 keeps ``seed``; the others get independent derived seeds)."""
    return int(seed) if k == 0 else int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


def check_composition(defenses: Sequence[Any]) -> None:
    """At most one training defense; ``aggregate`` at most once and last."""
    problems = []
    training = [d.name for d in defenses if d.trains]
    if len(training) > 1:
        problems.append(f"at most one defense may change local training, got {', '.join(training)}")
    positions = [i for i, d in enumerate(defenses) if isinstance(d, SecureAggregation)]
    if len(positions) > 1 or (positions and positions[0] != len(defenses) - 1):
        problems.append("aggregate must appear once, as the last defense (clients apply the others first)")
    if problems:
        raise ConfigError("defenses: " + "; ".join(problems))


def apply_defense(defense: Any, update: ClientUpdate, model: nn.Module, inputs: torch.Tensor) -> ClientUpdate:
    """Call one defense, handing it the client's inputs when it needs them (Soteria)."""
    if defense.needs_inputs:
        return defense(update, model=model, inputs=inputs)
    return defense(update, model=model)


def defend(model: nn.Module, truth: GroundTruth, specs: Sequence[str], make_update: MakeUpdate, *,
           seed: int, sample: Callable[[int], GroundTruth] | None = None) -> Defended:
    """Simulate the client side with defenses.

    Args:
        model: the global model.
        truth: client 0's batch.
        specs: ``NAME:key=value`` defense specs, applied in order.
        make_update: computes one client's update, given a training defense or ``None``.
        seed: the scenario's seed (defense seeds derive from it).
        sample: ``sample(k)`` draws client ``k``'s batch (needed for ``aggregate:clients>1``).

    Raises:
        ConfigError: an invalid combination, or aggregation without ``sample``.
    """
    defenses = build_defenses(list(specs), seed=seed)
    check_composition(defenses)
    agg = defenses[-1] if defenses and isinstance(defenses[-1], SecureAggregation) else None
    clients = agg.clients if agg is not None else 1
    if clients > 1 and sample is None:
        raise ConfigError("aggregate: simulating other clients needs a sampler for their batches")
    trainer0 = next((d for d in defenses if d.trains), None)
    if trainer0 is not None:
        model = trainer0.prepare_model(model)
    updates, truths = [], []
    for k in range(clients):
        own = defenses if k == 0 else build_defenses(list(specs), seed=client_seed(seed, k))
        own = [d for d in own if not isinstance(d, SecureAggregation)]
        batch = truth if k == 0 else sample(k)  # type: ignore[misc]
        trainer = next((d for d in own if d.trains), None)
        seen = trainer.client_truth(batch) if trainer is not None else batch
        update = make_update(model, batch.inputs, batch.labels, trainer)
        for defense in own:
            update = apply_defense(defense, update, model, seen.inputs)
        updates.append(update)
        truths.append(seen)
    update = agg.combine(updates) if agg is not None else updates[0]
    merged = GroundTruth(torch.cat([t.inputs for t in truths]), torch.cat([t.labels for t in truths]))
    return Defended(model, update, merged, clients)


RECOVERED_PSNR = 20.0
"""An image counts as recovered when its PSNR against the truth is at least this (dB)."""


def defense_metrics(defended: Defended, metrics: dict[str, Any]) -> dict[str, Any]:
    """Extra metrics a defended run reports: ε/δ of DP-SGD; clients, images and recovered images.

    Args:
        defended: what :func:`defend` returned.
        metrics: :func:`gradleak.metrics.evaluate`'s output for that run.
    """
    out: dict[str, Any] = {}
    privacy = defended.update.meta.get("privacy")
    if privacy:
        out.update(epsilon=privacy["epsilon"], delta=privacy["delta"])
    if defended.clients > 1:
        psnrs = metrics["per_image"]["psnr"]
        out.update(clients=defended.clients, images=len(psnrs),
                   recovered=sum(p >= RECOVERED_PSNR for p in psnrs))
    return out
