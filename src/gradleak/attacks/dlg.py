"""Deep Leakage from Gradients (Zhu, Liu, Han; NeurIPS 2019; arXiv 1906.08935).

Threat model: honest-but-curious server with the weights and one FedSGD gradient (or a
one-step FedAvg delta). Needs: the batch size; nothing else — labels are optimised jointly
as soft labels. Works best on twice-differentiable models (the sigmoid ``lenet``).

Objective: ``Σ_layers ‖∇θ L(x, softmax(y′)) − g*‖²`` over dummy images ``x`` and label
logits ``y′``, minimised with L-BFGS (lr 1, no line search); restarts (and in ``run_many`` the
clients) run as rows of one batched L-BFGS in which every row keeps its own curvature history and
stopping decisions, so each equals its own run; the lowest loss any row evaluated is kept.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("lenet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(1, 1, 8, 8), torch.tensor([4]))
    >>> DLG(steps=3).run(model, update, shape=(1, 8, 8)).inputs.shape
    torch.Size([1, 1, 8, 8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gradleak.attacks.base import Attack
from gradleak.core.device import model_device
from gradleak.core.seeding import attack_generator
from gradleak.core.types import ClientUpdate, Progress, Reconstruction, TrialTransform
from gradleak.inversion.gradients import TrialGradients, observed_gradient
from gradleak.inversion.lbfgs import Tolerances, lbfgs_minimise
from gradleak.inversion.losses import GradientDistance
from gradleak.inversion.matching import check_optimisation_settings
from gradleak.models.layers import last_linear


class DLG(Attack):
    """DLG: joint L-BFGS over images and soft labels with the L2 gradient distance.

    Args:
        steps: L-BFGS steps (each up to ``max_iter`` evaluations; the paper runs 300).
        lr: L-BFGS learning rate.
        max_iter: evaluations per L-BFGS step.
        restarts: independent random starts (batched), the lowest loss is kept.
        tolerance_grad, tolerance_change: L-BFGS stops a step when the gradient's largest entry, or
            the change of the loss or of the point, falls below these (torch's defaults are 1e-7 and
            1e-9; gradleak's tighter defaults cost more time and gained +5 dB median on MNIST/lenet).
        loss_floor: a run stops for good once its gradient distance is at most this (0: only at 0).
        seed: seeds the random starts.
        transform: an adaptive attacker's copy of the defense applied to trial gradients.
    """

    name = "dlg"
    presets = {"tiny": {"steps": 2, "max_iter": 2},
               "paper": {"steps": 300, "lr": 1.0, "max_iter": 20, "restarts": 1}}
    paper_sources = {
        "steps": "[CODE] 300 L-BFGS iterations (the DLG run of PatrickZH/Improved-Deep-Leakage-from-Gradients)",
        "lr": "[CODE] torch.optim.LBFGS(lr=1.0)",
        "max_iter": "[CODE] LBFGS's default max_iter=20",
        "restarts": "[CODE] one run",
    }
    default_tuned_on = "not tuned: the defaults are the paper preset"
    supports_adaptive = True
    batches_clients = True
    progress_unit = "L-BFGS steps"

    def __init__(self, *, steps: int = 300, lr: float = 1.0, max_iter: int = 20, restarts: int = 1,
                 tolerance_grad: float = 1e-12, tolerance_change: float = 1e-14, loss_floor: float = 0.0,
                 seed: int = 0, transform: TrialTransform | None = None) -> None:
        check_optimisation_settings(self.name, steps=steps, restarts=restarts, lr=lr, max_iter=max_iter,
                                    tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                                    loss_floor=loss_floor)
        self.steps, self.lr, self.max_iter, self.restarts, self.seed = steps, lr, max_iter, restarts, seed
        self.tolerance_grad, self.tolerance_change, self.loss_floor = tolerance_grad, tolerance_change, loss_floor
        self.transform = transform

    def _check(self, model: nn.Module, update: ClientUpdate) -> list[str]:
        return [] if last_linear(model) else ["the model has no nn.Linear output layer to size soft labels"]

    def reconstruct_many(self, model: nn.Module, updates: Sequence[ClientUpdate], *, shape: Sequence[int],
                         progress: Progress | None = None) -> list[Reconstruction]:
        n, b, r = len(updates), updates[0].num_examples, self.restarts
        classes = last_linear(model)[1].out_features  # type: ignore[index]
        gen = attack_generator(self.seed)
        starts = []
        for _ in range(r):  # the draw order of the sequential restarts of earlier versions
            x = torch.rand((1, b, *shape), generator=gen)
            logits = torch.randn((1, b, classes), generator=gen)
            starts.append(torch.cat([x.flatten(), logits.flatten()]))
        device = model_device(model)
        z0 = torch.stack(starts).to(device).repeat(n, 1)
        pixels = b * math.prod(shape)
        dist = GradientDistance([observed_gradient(model, u) for u in updates], "l2")
        trial = TrialGradients(model, self.transform)

        def loss_fn(z: torch.Tensor) -> torch.Tensor:
            x = z[:, :pixels].reshape(len(z), b, *shape)
            soft = z[:, pixels:].reshape(len(z), b, classes).softmax(-1)
            return dist(trial(x, soft))

        out = lbfgs_minimise(loss_fn, z0, steps=self.steps, lr=self.lr, max_iter=self.max_iter, progress=progress,
                             tol=Tolerances(self.tolerance_grad, self.tolerance_change, self.loss_floor))
        recs = []
        for i in range(n):
            rows = slice(i * r, (i + 1) * r)
            row = i * r + int(torch.nan_to_num(out.loss[rows], nan=math.inf).argmin())
            x = out.z[row, :pixels].reshape(b, *shape)
            labels = out.z[row, pixels:].reshape(b, classes).argmax(-1)
            recs.append(Reconstruction(torch.nan_to_num(x, nan=0.5), labels, out.history[row], info={
                "labels_from": "optimised", "final_loss": float(out.loss[row]), "best_restart": row - i * r,
                "evaluations": sum(out.evaluations[rows])}))
        return recs
