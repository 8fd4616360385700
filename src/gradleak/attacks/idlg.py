"""Improved DLG (Zhao, Mopuri, Bilen; 2020; arXiv 2001.02610).

Threat model: as DLG. Needs: batch size 1 for label restoration (the only negative row of
the last linear layer's weight gradient, which needs non-negative features feeding that
layer: ReLU or sigmoid), or known labels for larger batches.

The label is restored analytically; then DLG's L2 gradient matching runs with L-BFGS over
the image only, the label fixed (restarts and, in ``run_many``, clients as rows of one batched
L-BFGS, each with its own curvature history; the lowest loss evaluated is kept).

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("lenet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(1, 1, 8, 8), torch.tensor([6]))
    >>> IDLG(steps=2).run(model, update, shape=(1, 8, 8)).labels.tolist()
    [6]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gradleak.attacks.base import Attack
from gradleak.core.seeding import attack_generator
from gradleak.core.types import ClientUpdate, Progress, Reconstruction, TrialTransform
from gradleak.inversion.gradients import TrialGradients, observed_gradient
from gradleak.inversion.lbfgs import Tolerances, lbfgs_minimise
from gradleak.inversion.losses import GradientDistance
from gradleak.inversion.matching import check_optimisation_settings
from gradleak.labels.resolve import resolve_labels


class IDLG(Attack):
    """iDLG: analytic label, then L-BFGS over the image with the L2 gradient distance.

    Args:
        steps: L-BFGS steps (each up to ``max_iter`` evaluations).
        lr: L-BFGS learning rate.
        max_iter: evaluations per L-BFGS step.
        restarts: random starts (batched); the lowest loss is kept.
        tolerance_grad, tolerance_change, loss_floor: when L-BFGS stops (see :class:`~gradleak.attacks.dlg.DLG`).
        labels: ``auto`` (known if the update has them, else iDLG), ``restore``, ``known``,
            or a label method name.
        seed: seeds the random starts.
        transform: an adaptive attacker's copy of the defense applied to trial gradients.
    """

    name = "idlg"
    presets = {"tiny": {"steps": 2, "max_iter": 2},
               "paper": {"steps": 300, "lr": 1.0, "max_iter": 20, "restarts": 1}}
    paper_sources = {
        "steps": "[CODE] Iteration = 300 (PatrickZH/Improved-Deep-Leakage-from-Gradients iDLG.py)",
        "lr": "[CODE] lr = 1.0, torch.optim.LBFGS",
        "max_iter": "[CODE] LBFGS's default max_iter=20",
        "restarts": "[CODE] one run",
    }
    default_tuned_on = "not tuned: the defaults are the paper preset"
    needs_labels = True
    takes_labels = True
    supports_adaptive = True
    batches_clients = True
    progress_unit = "L-BFGS steps"

    def __init__(self, *, steps: int = 300, lr: float = 1.0, max_iter: int = 20, restarts: int = 1,
                 tolerance_grad: float = 1e-12, tolerance_change: float = 1e-14, loss_floor: float = 0.0,
                 labels: str = "restore", seed: int = 0, transform: TrialTransform | None = None) -> None:
        check_optimisation_settings(self.name, steps=steps, restarts=restarts, lr=lr, max_iter=max_iter,
                                    tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                                    loss_floor=loss_floor)
        self.steps, self.lr, self.max_iter, self.restarts = steps, lr, max_iter, restarts
        self.tolerance_grad, self.tolerance_change, self.loss_floor = tolerance_grad, tolerance_change, loss_floor
        self.labels, self.seed, self.transform = labels, seed, transform

    def reconstruct_many(self, model: nn.Module, updates: Sequence[ClientUpdate], *, shape: Sequence[int],
                         progress: Progress | None = None) -> list[Reconstruction]:
        n, b, r = len(updates), updates[0].num_examples, self.restarts
        found = [resolve_labels(model, u, self.labels, shape=shape) for u in updates]
        y = torch.stack([labels for labels, _ in found]).repeat_interleave(r, 0)
        gen = attack_generator(self.seed)
        starts = torch.stack([torch.rand((1, b, *shape), generator=gen).flatten() for _ in range(r)])
        z0 = starts.to(y.device).repeat(n, 1)
        dist = GradientDistance([observed_gradient(model, u) for u in updates], "l2")
        trial = TrialGradients(model, self.transform)

        def loss_fn(z: torch.Tensor) -> torch.Tensor:
            return dist(trial(z.reshape(len(z), b, *shape), y))

        out = lbfgs_minimise(loss_fn, z0, steps=self.steps, lr=self.lr, max_iter=self.max_iter, progress=progress,
                             tol=Tolerances(self.tolerance_grad, self.tolerance_change, self.loss_floor))
        recs = []
        for i, (labels, how) in enumerate(found):
            rows = slice(i * r, (i + 1) * r)
            row = i * r + int(torch.nan_to_num(out.loss[rows], nan=math.inf).argmin())
            recs.append(Reconstruction(torch.nan_to_num(out.z[row].reshape(b, *shape), nan=0.5), labels,
                                       out.history[row], info={
                                           "labels_from": how, "final_loss": float(out.loss[row]),
                                           "best_restart": row - i * r, "evaluations": sum(out.evaluations[rows])}))
        return recs
