"""Gradient matching with fixed labels, and the option checks optimisation attacks share.

``invert_with_labels`` is the loop of Inverting Gradients (signed Adam on batched restarts,
cosine or L2 distance + TV, optionally GradInversion's BN-statistics prior); ``ig`` and
``geng`` are thin wrappers around it. ``invert_many`` runs it for several clients' updates in
one batched graph (``Attack.run_many``).

Example:
    >>> check_optimisation_settings("demo", steps=10, lr=0.1, distance="cosine")
    >>> try:
    ...     check_optimisation_settings("demo", steps=0, tv=-1.0)
    ... except ValueError as err:
    ...     print(err)
    demo: steps must be >= 1, got 0; tv must be >= 0, got -1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.seeding import attack_generator
from gradleak.core.types import Progress, Reconstruction, TrialTransform
from gradleak.inversion.bn_prior import BNStatisticsPrior
from gradleak.inversion.gradients import TrialGradients
from gradleak.inversion.losses import DISTANCES, GradientDistance
from gradleak.inversion.optimize import KEEP, optimise_inputs
from gradleak.inversion.priors import total_variation

LATE = 5 / 8
"""The fraction of a run after which ``invert_many``'s ``tv_late`` replaces ``tv`` (the learning
rate's second decay step)."""


def check_optimisation_settings(name: str, **values: Any) -> None:
    """Raise :class:`ConfigError` listing every out-of-range optimisation setting given."""
    problems = []
    for key in ("steps", "restarts", "seeds", "max_iter"):
        if key in values and values[key] < 1:
            problems.append(f"{key} must be >= 1, got {values[key]}")
    if "keep" in values and values["keep"] not in KEEP:
        problems.append(f"keep must be one of {', '.join(KEEP)}, got {values['keep']!r}")
    for key in ("tolerance_grad", "tolerance_change", "loss_floor"):
        if key in values and not values[key] >= 0:
            problems.append(f"{key} must be >= 0, got {values[key]}")
    if "lr" in values and not values["lr"] > 0:
        problems.append(f"lr must be > 0, got {values['lr']}")
    for key in ("tv", "tv_late", "bn", "l2", "group"):
        if key in values and values[key] < 0:
            problems.append(f"{key} must be >= 0, got {values[key]}")
    if "distance" in values and values["distance"] not in DISTANCES:
        problems.append(f"distance must be one of {', '.join(DISTANCES)}, got {values['distance']!r}")
    if problems:
        raise ConfigError(f"{name}: " + "; ".join(problems))


def invert_with_labels(model: nn.Module, target: list[torch.Tensor], labels: torch.Tensor, *,
                       shape: Sequence[int], steps: int, lr: float, tv: float, restarts: int,
                       distance: str, signed: bool, seed: int, bn_weight: float = 0.0,
                       bn_prior: BNStatisticsPrior | None = None, transform: TrialTransform | None = None,
                       progress: Progress | None = None, info: dict | None = None,
                       keep: str = "best") -> Reconstruction:
    """Match ``target`` with the labels held fixed; keep the lowest-loss iterate of the best restart."""
    return invert_many(model, [target], [labels], shape=shape, steps=steps, lr=lr, tv=tv, restarts=restarts,
                       distance=distance, signed=signed, seed=seed, bn_weight=bn_weight, bn_prior=bn_prior,
                       transform=transform, progress=progress, infos=[info or {}], keep=keep)[0]


def invert_many(model: nn.Module, targets: list[list[torch.Tensor]], labels: list[torch.Tensor], *,
                shape: Sequence[int], steps: int, lr: float, tv: float, restarts: int, distance: str,
                signed: bool, seed: int, bn_weight: float = 0.0, bn_prior: BNStatisticsPrior | None = None,
                transform: TrialTransform | None = None, progress: Progress | None = None,
                infos: list[dict] | None = None, keep: str = "best",
                tv_late: float | None = None) -> list[Reconstruction]:
    """:func:`invert_with_labels` for N clients at once (same batch size), as one batched graph.

    Rows are client-major: client ``i`` owns rows ``i·R .. i·R + R − 1``, all started from the same
    seeded images as a single run, each matched against its own client's target with its own
    labels. Rows never interact, so each client's result equals its own single run (to float
    tolerance). ``bn_prior``, when given, holds every client's BN targets in the same order.
    ``tv_late``, when given, weighs TV from :data:`LATE` of the run on (``tv`` before), and the
    lowest-loss iterate is chosen by the loss with ``tv_late``.
    """
    n, r, b = len(targets), restarts, len(labels[0])
    device = labels[0].device
    y = torch.stack(list(labels)).repeat_interleave(r, 0)
    dist = GradientDistance(targets, distance)
    trial = TrialGradients(model, transform)
    use_bn = bn_prior is not None and bn_prior.active and bn_weight > 0

    def loss_fn(x: torch.Tensor, t: float = 1.0) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        loss = dist(trial(x, y, factored=True))
        if tv_late is not None:  # t: the fraction of the run done (optimise_inputs' timed loss)
            smooth = total_variation(x)
            prior = bn_weight * bn_prior(x) if use_bn else 0.0  # type: ignore[misc]
            return loss + (tv if t < LATE else tv_late) * smooth + prior, loss + tv_late * smooth + prior
        if tv > 0:
            loss = loss + tv * total_variation(x)
        return loss + bn_weight * bn_prior(x) if use_bn else loss  # type: ignore[misc]

    x0 = torch.rand((r, b, *shape), generator=attack_generator(seed)).to(device)
    x0 = x0.repeat(n, *([1] * (x0.dim() - 1)))
    out = optimise_inputs(loss_fn, x0, steps=steps, lr=lr, signed=signed, progress=progress, keep=keep,
                          timed=tv_late is not None)
    recs = []
    for i in range(n):
        best = out.best_row(slice(i * r, (i + 1) * r))
        row = i * r + best
        details = dict(infos[i] if infos else {})
        details.update({"best_restart": best, "final_loss": float(out.loss[row]), "evaluations": out.evaluations * r,
                        "bn_prior": bn_prior.source if use_bn else "off"})  # type: ignore[union-attr]
        recs.append(Reconstruction(out.x[row], labels[i], out.history[row], info=details))
    return recs
