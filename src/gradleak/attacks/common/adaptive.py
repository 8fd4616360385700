"""The adaptive attacker: copy the deterministic part of the client's defenses onto trial gradients.

GGL (Li, Han, Wang, Wang; CVPR 2022; arXiv 2203.15696) attacks a defended update by passing
its own trial gradient through the same defense before matching, estimating the defense's
settings from what it observes. :func:`adaptive_transform` reads the defense specs recorded
in ``update.defenses`` and the observed update, and returns one function on trial gradients
(tensors with a leading restart dimension ``R``) that applies, in the client's order:

* ``clip``: scale each restart's gradient down to the observed total L2 norm (per tensor for
  ``per_layer``), ``g · min(1, S / (‖g‖ + 1e-6))`` — GGL's estimate ``S := ‖y‖``;
* ``prune`` / ``topk``: multiply by the observed non-zero mask (where a later defense, e.g.
  noise, filled the zeros in, prune the trial itself by the same per-tensor ratio);
* ``soteria``: multiply the last linear layer's weight gradient by the observed column mask;
* ``quantize`` / ``sign``: the same rounding with a straight-through gradient (identity
  backward), ``sign`` scaled to the observed magnitude.

Noise, DP-SGD, MixUp and aggregation have no deterministic part to copy and are skipped.
Any attack that takes a ``transform`` (passed to ``trial_gradients``) gets it with ``--adaptive``.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> from gradleak.registry import create_defense
    >>> from gradleak.attacks.common.gradients import observed_gradient, trial_gradients
    >>> model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> x, y = torch.rand(1, 1, 8, 8), torch.tensor([3])
    >>> update = create_defense("prune", ratio=0.9)(fedsgd_update(model, x, y))
    >>> transform = adaptive_transform(model, update)
    >>> trial = transform(trial_gradients(model, x[None], y[None]))
    >>> all(torch.allclose(t[0], o) for t, o in zip(trial, observed_gradient(model, update)))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradleak.attacks.common.gradients import GradList, TrialTransform, observed_gradient
from gradleak.defenses.base import parse_spec
from gradleak.defenses.prune import smallest_mask
from gradleak.defenses.quantize import quantize_tensor
from gradleak.models.layers import last_linear
from gradleak.types import ClientUpdate

EPS = 1e-6
Builder = Callable[[dict[str, Any], GradList, list[str], nn.Module], TrialTransform | None]


def _per_restart_norm(grads: GradList) -> torch.Tensor:
    return torch.sqrt(sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads))  # type: ignore[arg-type]


def _scale(g: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return g * factor.reshape(-1, *([1] * (g.dim() - 1)))


def _clip(opts: dict[str, Any], observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
    if opts.get("per_layer", False):
        bounds = [float(o.norm()) for o in observed]

        def per_layer(grads: GradList) -> GradList:
            return [_scale(g, (s / (g.reshape(g.shape[0], -1).norm(dim=1) + EPS)).clamp(max=1.0))
                    for g, s in zip(grads, bounds, strict=True)]
        return per_layer
    bound = float(torch.sqrt(sum((o.double() ** 2).sum() for o in observed)))  # type: ignore[arg-type]

    def clip_all(grads: GradList) -> GradList:
        factor = (bound / (_per_restart_norm(grads) + EPS)).clamp(max=1.0)
        return [_scale(g, factor) for g in grads]
    return clip_all


def _prune(opts: dict[str, Any], observed: GradList, names: list[str], model: nn.Module,
           *, global_k: bool = False) -> TrialTransform:
    ratio = float(opts.get("ratio", 0.9))
    masks = [(o != 0).to(o.dtype) for o in observed]
    zeros = sum(int((o == 0).sum()) for o in observed) / sum(o.numel() for o in observed)
    filled = zeros < 0.5 * ratio  # a later defense (e.g. noise) filled the zeros in

    def prune(grads: GradList) -> GradList:
        if not filled:
            return [g * m for g, m in zip(grads, masks, strict=True)]
        if not global_k:  # prune the trial itself, the same way, per tensor
            return [g * torch.stack([smallest_mask(gi.detach().abs(), ratio) for gi in g]).to(g.dtype)
                    for g in grads]
        flat = torch.cat([g.detach().reshape(g.shape[0], -1).abs() for g in grads], dim=1)
        keep = torch.stack([smallest_mask(row, ratio) for row in flat])
        out, start = [], 0
        for g in grads:
            size = g[0].numel()
            out.append(g * keep[:, start:start + size].reshape(g.shape).to(g.dtype))
            start += size
        return out
    return prune


def _topk(opts: dict[str, Any], observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
    return _prune(opts, observed, names, model, global_k=True)


def _soteria(opts: dict[str, Any], observed: GradList, names: list[str],
             model: nn.Module) -> TrialTransform | None:
    found = last_linear(model)
    key = f"{found[0]}.weight" if found and found[0] else "weight"
    if found is None or key not in names:
        return None
    i = names.index(key)
    columns = (observed[i].abs().sum(0) != 0).to(observed[i].dtype)

    def soteria(grads: GradList) -> GradList:
        out = list(grads)
        out[i] = grads[i] * columns
        return out
    return soteria


def _straight_through(g: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return g + (value - g).detach()


def _quantize(opts: dict[str, Any], observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
    bits = int(opts.get("bits", 8))

    def quantize(grads: GradList) -> GradList:
        return [_straight_through(g, quantize_tensor(g.detach(), bits, tuple(range(1, g.dim()))))
                for g in grads]
    return quantize


def _sign(opts: dict[str, Any], observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
    scales = [float(o.abs().max()) for o in observed]

    def sign(grads: GradList) -> GradList:
        return [_straight_through(g, torch.sign(g.detach()) * s) for g, s in zip(grads, scales, strict=True)]
    return sign


BUILDERS: dict[str, Builder] = {"clip": _clip, "prune": _prune, "topk": _topk, "soteria": _soteria,
                                "quantize": _quantize, "sign": _sign}
"""Defense name → builder of its trial-gradient copy; defenses not listed have none."""


def adaptive_transform(model: nn.Module, update: ClientUpdate) -> TrialTransform | None:
    """The trial-gradient transform mirroring ``update.defenses``, or ``None`` when there is none.

    Args:
        model: the attacked model (parameter order and the last linear layer).
        update: the defended update; its ``defenses`` name what the client applied, in order.

    Returns:
        a function ``GradList -> GradList`` on tensors with a leading restart dimension, or
        ``None`` if no recorded defense has a deterministic part.
    """
    observed = observed_gradient(model, update)
    names = [n for n, _ in model.named_parameters()]
    steps = []
    for spec in update.defenses:
        name, opts = parse_spec(spec)
        builder = BUILDERS.get(name)
        step = builder(opts, observed, names, model) if builder is not None else None
        if step is not None:
            steps.append(step)
    if not steps:
        return None

    def transform(grads: GradList) -> GradList:
        for step in steps:
            grads = step(grads)
        return grads
    return transform
