"""Deep Leakage from Gradients (Zhu, Liu, Han; NeurIPS 2019; arXiv 1906.08935).

Threat model: honest-but-curious server with the weights and one FedSGD gradient (or a
one-step FedAvg delta). Needs: the batch size; nothing else — labels are optimised jointly
as soft labels. Works best on twice-differentiable models (the sigmoid ``lenet``).

Objective: ``Σ_layers ‖∇θ L(x, softmax(y′)) − g*‖²`` over dummy images ``x`` and label
logits ``y′``, minimised with L-BFGS (lr 1); restarts run one after another (L-BFGS's line
search couples variables, so restarts cannot share one graph) and the lowest loss is kept.

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
from gradleak.core.seeding import attack_generator
from gradleak.core.types import ClientUpdate, Progress, Reconstruction, TrialTransform
from gradleak.inversion.gradients import observed_gradient, trial_gradients
from gradleak.inversion.lbfgs import lbfgs_minimise
from gradleak.inversion.losses import l2_distance
from gradleak.inversion.matching import check_optimisation_settings
from gradleak.models.layers import last_linear


class DLG(Attack):
    """DLG: joint L-BFGS over images and soft labels with the L2 gradient distance.

    Args:
        steps: L-BFGS steps (each up to ``max_iter`` evaluations; the paper runs 300).
        lr: L-BFGS learning rate.
        max_iter: evaluations per L-BFGS step.
        restarts: independent random starts (sequential), the lowest loss is kept.
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
    progress_unit = "L-BFGS steps"

    def __init__(self, *, steps: int = 300, lr: float = 1.0, max_iter: int = 20, restarts: int = 1,
                 seed: int = 0, transform: TrialTransform | None = None) -> None:
        check_optimisation_settings(self.name, steps=steps, restarts=restarts, lr=lr, max_iter=max_iter)
        self.steps, self.lr, self.max_iter, self.restarts, self.seed = steps, lr, max_iter, restarts, seed
        self.transform = transform

    def _check(self, model: nn.Module, update: ClientUpdate) -> list[str]:
        return [] if last_linear(model) else ["the model has no nn.Linear output layer to size soft labels"]

    def reconstruct(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
                    progress: Progress | None = None) -> Reconstruction:
        target = observed_gradient(model, update)
        classes = last_linear(model)[1].out_features  # type: ignore[index]
        gen = attack_generator(self.seed)
        evaluations = [0]
        best: tuple[float, torch.Tensor, torch.Tensor, list[float]] | None = None
        for _ in range(self.restarts):
            x = torch.rand((1, update.num_examples, *shape), generator=gen).requires_grad_(True)
            logits = torch.randn((1, update.num_examples, classes), generator=gen).requires_grad_(True)

            def loss_fn() -> torch.Tensor:
                evaluations[0] += 1
                trial = trial_gradients(model, x, logits.softmax(-1), self.transform)  # noqa: B023
                return l2_distance(trial, target).sum()

            hist = lbfgs_minimise(loss_fn, [x, logits], steps=self.steps, lr=self.lr,
                                  max_iter=self.max_iter, progress=progress)
            final = hist[-1] if hist and math.isfinite(hist[-1]) else float("inf")
            if best is None or final < best[0]:
                best = (final, x.detach()[0], logits.detach()[0], hist)
        assert best is not None
        final, x_best, logits_best, hist = best
        return Reconstruction(torch.nan_to_num(x_best, nan=0.5), logits_best.argmax(-1), hist,
                              info={"labels_from": "optimised", "final_loss": final,
                                    "evaluations": evaluations[0]})
