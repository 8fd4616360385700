"""The adaptive attacker: copy the deterministic part of the client's defenses onto trial gradients.

GGL (Li, Zhang, Liu, Liu; CVPR 2022; arXiv 2203.15696) attacks a defended update by passing
its own trial gradient through the same defense before matching, estimating the defense's
settings from what it observes. :func:`adaptive_transform` rebuilds every defense recorded in
``update.defenses`` from its spec and chains their
:meth:`~gradleak.defenses.base.Defense.trial_transform`, in the client's order. Each defense
owns its copy (clip, prune, topk, soteria, quantize, sign); noise, DP-SGD, MixUp and
aggregation have no deterministic part and contribute nothing. A recorded name that is not a
registered defense is an error, never skipped.

Any attack whose ``supports_adaptive`` is true takes the result as ``transform``.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> from gradleak.core.registry import create_defense
    >>> from gradleak.inversion.gradients import observed_gradient, trial_gradients
    >>> model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> x, y = torch.rand(1, 1, 8, 8), torch.tensor([3])
    >>> update = create_defense("prune", ratio=0.9)(fedsgd_update(model, x, y))
    >>> transform = adaptive_transform(model, update)  # re-prunes the trial gradient at 90 %
    >>> trial = transform(trial_gradients(model, x[None], y[None]))
    >>> all(torch.allclose(t[0], o) for t, o in zip(trial, observed_gradient(model, update)))
    True
"""

from __future__ import annotations

from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.registry import DEFENSES
from gradleak.core.types import ClientUpdate, GradList, TrialTransform
from gradleak.defenses.base import parse_spec
from gradleak.inversion.gradients import observed_gradient

VARIANTS = ("faithful", "observed-mask")


def adaptive_transform(model: nn.Module, update: ClientUpdate, *, variant: str = "faithful") -> TrialTransform | None:
    """The trial-gradient transform mirroring ``update.defenses``, or ``None`` when there is none.

    Args:
        model: the attacked model (parameter order and the last linear layer).
        update: the defended update; its ``defenses`` name what the client applied, in order.
        variant: ``faithful`` (each defense's ``trial_transform``: the papers' adaptive attack) or
            ``observed-mask`` (a defense's ``observed_mask_transform`` where it has one: the
            stronger variant for ``prune``/``topk``, which copies the observed zero pattern).

    Returns:
        a function ``GradList -> GradList`` on tensors with a leading restart dimension, or
        ``None`` if no recorded defense has a deterministic part.

    Raises:
        UnknownNameError: a recorded defense that is not registered.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"adaptive variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    observed = observed_gradient(model, update)
    names = [n for n, _ in model.named_parameters()]
    steps = []
    for spec in update.defenses:
        name, options = parse_spec(spec)
        defense = DEFENSES.create(name, **options)
        copy = getattr(defense, "observed_mask_transform", None) if variant == "observed-mask" else None
        step = (copy or defense.trial_transform)(observed, names, model)
        if step is not None:
            steps.append(step)
    if not steps:
        return None

    def transform(grads: GradList) -> GradList:
        for step in steps:
            grads = step(grads)
        return grads
    return transform
