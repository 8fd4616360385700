"""Inverting Gradients (Geiping, Bauermeister, Dröge, Moeller; NeurIPS 2020; arXiv 2003.14053).

Threat model: honest-but-curious server with the model's weights and one FedSGD gradient
(or a one-step FedAvg delta, read as ``-delta / lr``; several steps give an average gradient).
Needs: the labels (known, or restored — iDLG for one sample), the batch size (from
``num_examples``). Works on any differentiable model; no ReLU, bias or BN assumption.

Objective: ``1 − cos(∇θ L(x, y), g*) + α_TV · TV(x)``, minimised with Adam on the *sign*
of the gradient, step decay ×0.1 at 3/8, 5/8, 7/8, pixels boxed to ``[0, 1]``; ``restarts``
independent starts run as one batched tensor; the lowest-loss iterate of the best restart is kept.
Departure from the paper: by default at b=2..7, α_TV falls to 0.01 at 5/8 of the run (``tv_late``;
chosen and confirmed on validation digits); the paper's α_TV is constant.

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
from typing import Literal

from torch import nn

from gradleak.attacks.base import Attack
from gradleak.core.errors import ConfigError
from gradleak.core.types import ClientUpdate, Progress, Reconstruction, TrialTransform
from gradleak.inversion.gradients import observed_gradient
from gradleak.inversion.matching import check_optimisation_settings, invert_many
from gradleak.labels.resolve import resolve_labels

LR = 0.05
"""The default learning rate (pixel units), chosen with :data:`TV_BY_BATCH` on the validation split."""
TV_BY_BATCH: dict[int, float] = {1: 1e-2, 2: 2e-2, 4: 5e-2, 8: 5e-2}
"""``tv="auto"``: the TV weight per batch size at :data:`LR`, chosen on the validation split by
``bench/tune_ig_tv.py`` (docs/results/ig_tv_validation.md; a test checks both against its runs)."""


TV_LATE_BY_BATCH: dict[int, float] = {2: 1e-2, 4: 1e-2}
"""``tv_late="auto"`` with ``tv="auto"``: the TV weight from 5/8 of the run on, per tuned batch size
(absent: the same weight as before 5/8). b=4 and b=2: b=1's weight, each chosen on validation seeds
100-119 and confirmed on 120-159 (``bench/ig_b4_variants.py``: docs/results/ig_b4_tv_schedule.md,
ig_b4_tv_confirm.md; ``bench/ig_tv_late_sizes.py``: ig_tv_late_b2.md, ig_tv_late_b2_confirm.md).
b=8 failed the first stage (ig_tv_late_b8.md) and keeps a constant weight; b=1's is 0.01 anyway."""


def _tuned(batch_size: int) -> int:
    return max((b for b in TV_BY_BATCH if b <= batch_size), default=min(TV_BY_BATCH))


def auto_tv(batch_size: int) -> float:
    """The TV weight ``tv="auto"`` uses: that of the largest tuned batch size not above ``batch_size``.

    Beyond the largest tuned batch size (8) its weight is kept: an extrapolation, not a choice made
    on data.

    Example:
        >>> auto_tv(1) == TV_BY_BATCH[1], auto_tv(3) == TV_BY_BATCH[2], auto_tv(64) == TV_BY_BATCH[8]
        (True, True, True)
    """
    return TV_BY_BATCH[_tuned(batch_size)]


def auto_tv_late(batch_size: int) -> float:
    """The TV weight ``tv="auto"`` uses from 5/8 of the run on (:data:`TV_LATE_BY_BATCH`, else :func:`auto_tv`).

    Example:
        >>> auto_tv(4), auto_tv_late(4), auto_tv_late(1), auto_tv_late(3), auto_tv_late(8)
        (0.05, 0.01, 0.01, 0.01, 0.05)
    """
    return TV_LATE_BY_BATCH.get(_tuned(batch_size), auto_tv(batch_size))


class InvertingGradients(Attack):
    """Inverting Gradients: cosine gradient matching + TV, signed Adam, batched restarts.

    Args:
        steps: Adam steps (the paper: 4800 on CIFAR-10, 24000 on ImageNet).
        lr: Adam learning rate in pixel units (the paper's code steps in the model's normalised units:
            its 0.1 is 0.05 here for gradleak's models, whose ``Normalize`` has std 0.5).
        tv: weight of total variation, or ``auto`` (the default): the weight chosen for the update's
            batch size on validation digits (:data:`TV_BY_BATCH`, :func:`auto_tv`; the run's ``info["tv"]``
            says which). Until December 2026 the default was 1e-2 for every batch size.
        tv_late: the TV weight from 5/8 of the run on (the lowest-loss iterate is chosen with it), or
            ``auto`` (the default): with ``tv="auto"`` the weight of :data:`TV_LATE_BY_BATCH` (b=2..7:
            0.01 after 0.02 or 0.05; other batch sizes keep ``tv``), with a number for ``tv`` that number. A
            departure from the paper, whose TV weight is constant; ``tv_late`` = ``tv`` restores it.
        restarts: independent random starts, optimised together.
        distance: ``cosine`` (the paper) or ``l2``.
        signed: use the sign of the gradient (the paper's choice).
        labels: ``auto``, ``known``, ``restore`` or a label method name.
        seed: seeds the random starts.
        transform: an adaptive attacker's copy of the defense applied to trial gradients.
        keep: ``best`` (the lowest-loss iterate of the best restart) or ``last`` (the final iterate,
            as until November 2026: on 8×8 digits at 100 steps it scored higher; on MNIST at 1000
            steps ``best`` did, see docs/results/ig_quality.md).
    """

    name = "ig"
    presets = {"tiny": {"steps": 3},
               "paper": {"steps": 4800, "lr": 0.05, "tv": 2e-4, "restarts": 4, "distance": "cosine",
                         "signed": True}}
    paper_sources = {
        "steps": "[PAPER] 4 800 iterations on CIFAR-10 (24 000 on ImageNet)",
        "lr": "[CODE] inversefed lr 0.1, step decay at 3/8, 5/8, 7/8; its images are normalised, so 0.1 there "
              "is 0.1 x std = 0.05 in pixel units for gradleak's models (std 0.5)",
        "tv": "[GUESS] 1e-4: the IG baseline of the GIFD code, on normalised images (= 2e-4 on pixels for "
              "std 0.5); the IG paper's CIFAR value was not verified",
        "restarts": "[GUESS] 4: the trials GGL and GIFD give IG; the IG paper's count was not verified",
        "distance": "[PAPER] 1 - cosine similarity",
        "signed": "[PAPER] Adam on the signed gradient",
    }
    default_tuned_on = ("lr and tv (auto: per batch size) on the validation split, MNIST convnet, seeds "
                        "100-109, bench/tune_ig_tv.py; tv_late at b=2 and b=4 on validation seeds 100-119, confirmed "
                        "on 120-159, bench/ig_b4_variants.py and ig_tv_late_sizes.py; 1000 steps were set by hand "
                        "in issue 3")
    needs_labels = True
    takes_labels = True
    supports_adaptive = True
    batches_clients = True

    def __init__(self, *, steps: int = 1000, lr: float = LR, tv: float | Literal["auto"] = "auto",
                 tv_late: float | Literal["auto"] = "auto", restarts: int = 1,
                 distance: str = "cosine", signed: bool = True, labels: str = "auto", seed: int = 0,
                 transform: TrialTransform | None = None, keep: str = "best") -> None:
        for key, value in (("tv", tv), ("tv_late", tv_late)):
            if isinstance(value, str) and value != "auto":
                raise ConfigError(f"ig: {key} must be a number >= 0 or 'auto', got {value!r} — e.g. {key}=auto "
                                  "(the default)")
        check_optimisation_settings(self.name, steps=steps, restarts=restarts, lr=lr, distance=distance, keep=keep,
                                    **{k: v for k, v in (("tv", tv), ("tv_late", tv_late)) if v != "auto"})
        self.steps, self.lr, self.tv, self.tv_late, self.restarts = steps, lr, tv, tv_late, restarts
        self.distance, self.signed, self.labels, self.seed = distance, signed, labels, seed
        self.transform, self.keep = transform, keep

    def reconstruct_many(self, model: nn.Module, updates: Sequence[ClientUpdate], *, shape: Sequence[int],
                         progress: Progress | None = None) -> list[Reconstruction]:
        targets = [observed_gradient(model, u) for u in updates]
        found = [resolve_labels(model, u, self.labels, shape=shape) for u in updates]
        b = len(found[0][0])
        tv = auto_tv(b) if self.tv == "auto" else self.tv
        late = self.tv_late if self.tv_late != "auto" else auto_tv_late(b) if self.tv == "auto" else tv
        return invert_many(model, targets, [labels for labels, _ in found], shape=shape, steps=self.steps,
                           lr=self.lr, tv=tv, restarts=self.restarts, distance=self.distance,
                           signed=self.signed, seed=self.seed, transform=self.transform, progress=progress,
                           infos=[{"labels_from": how, "tv": tv, "tv_late": late} for _, how in found], keep=self.keep,
                           tv_late=None if late == tv else late)
