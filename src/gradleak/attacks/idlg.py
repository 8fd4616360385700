"""Improved DLG (Zhao, Mopuri, Bilen; 2020; arXiv 2001.02610).

Threat model: as DLG. Needs: batch size 1 for label restoration (the only negative row of
the last linear layer's weight gradient, which needs non-negative features feeding that
layer: ReLU or sigmoid), or known labels for larger batches.

The label is restored analytically; then DLG's L2 gradient matching runs with L-BFGS over
the image only, the label fixed.

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
from gradleak.inversion.gradients import observed_gradient, trial_gradients
from gradleak.inversion.lbfgs import lbfgs_minimise
from gradleak.inversion.losses import l2_distance
from gradleak.inversion.matching import check_optimisation_settings
from gradleak.labels.resolve import resolve_labels


class IDLG(Attack):
    """iDLG: analytic label, then L-BFGS over the image with the L2 gradient distance.

    Args:
        steps: L-BFGS steps (each up to ``max_iter`` evaluations).
        lr: L-BFGS learning rate.
        max_iter: evaluations per L-BFGS step.
        restarts: sequential random starts; the lowest loss is kept.
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
    progress_unit = "L-BFGS steps"

    def __init__(self, *, steps: int = 300, lr: float = 1.0, max_iter: int = 20, restarts: int = 1,
                 labels: str = "restore", seed: int = 0,
                 transform: TrialTransform | None = None) -> None:
        check_optimisation_settings(self.name, steps=steps, restarts=restarts, lr=lr, max_iter=max_iter)
        self.steps, self.lr, self.max_iter, self.restarts = steps, lr, max_iter, restarts
        self.labels, self.seed, self.transform = labels, seed, transform

    def reconstruct(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
                    progress: Progress | None = None) -> Reconstruction:
        target = observed_gradient(model, update)
        labels, how = resolve_labels(model, update, self.labels, shape=shape)
        y = labels[None]
        gen = attack_generator(self.seed)
        evaluations = [0]
        best: tuple[float, torch.Tensor, list[float]] | None = None
        for _ in range(self.restarts):
            x = torch.rand((1, update.num_examples, *shape), generator=gen).requires_grad_(True)

            def loss_fn() -> torch.Tensor:
                evaluations[0] += 1
                return l2_distance(trial_gradients(model, x, y, self.transform), target).sum()  # noqa: B023

            hist = lbfgs_minimise(loss_fn, [x], steps=self.steps, lr=self.lr,
                                  max_iter=self.max_iter, progress=progress)
            final = hist[-1] if hist and math.isfinite(hist[-1]) else float("inf")
            if best is None or final < best[0]:
                best = (final, x.detach()[0], hist)
        assert best is not None
        final, x_best, hist = best
        return Reconstruction(torch.nan_to_num(x_best, nan=0.5), labels, hist,
                              info={"labels_from": how, "final_loss": final,
                                    "evaluations": evaluations[0]})
