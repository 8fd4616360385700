"""L2 clipping of the update: global (GGL's variant) or per layer.

GGL (Li et al., CVPR 2022, arXiv 2203.15696) clips the whole update to ``S``:
``g · min(1, S / (‖g‖₂ + 1e-6))`` with the norm over all tensors, S = 4 in Table 3. The
per-layer variant clips each tensor to ``S`` on its own. An adaptive attacker clips its
trial gradient to the observed norm (see :mod:`gradleak.defenses.adaptive`).

Example:
    >>> import torch
    >>> from gradleak.core.types import ClientUpdate, GradList, TrialTransform
    >>> update = ClientUpdate.from_gradients({"a": torch.full((4,), 3.0)}, num_examples=1)
    >>> clipped = Clip(norm=1.0)(update)
    >>> round(float(clipped.tensors["a"].norm()), 4)
    1.0
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.types import ClientUpdate, GradList, TrialTransform
from gradleak.defenses.base import Defense

EPS = 1e-6


def clip_factor(norm: torch.Tensor | float, bound: float) -> float:
    """``min(1, bound / (norm + 1e-6))``: the factor that brings ``norm`` within ``bound``."""
    return min(1.0, bound / (float(norm) + EPS))


class Clip(Defense):
    """Scale the update down so its L2 norm is at most ``norm``.

    Args:
        norm: the bound ``S`` (GGL: 4).
        per_layer: clip each tensor to ``norm`` instead of the whole update.

    Raises:
        ConfigError: ``norm`` not a positive finite number.
    """

    name = "clip"

    def __init__(self, *, norm: float = 4.0, per_layer: bool = False) -> None:
        if not (isinstance(norm, (int, float)) and norm > 0 and math.isfinite(norm)):
            raise ConfigError(f"clip: norm must be a positive finite number, got {norm!r}")
        self.norm, self.per_layer = float(norm), bool(per_layer)

    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None) -> ClientUpdate:
        tensors = update.tensors
        if self.per_layer:
            out = {n: t * clip_factor(t.norm(), self.norm) for n, t in tensors.items()}
        else:
            total = torch.sqrt(sum((t.double() ** 2).sum() for t in tensors.values()))
            factor = clip_factor(total, self.norm)
            out = {n: t * factor for n, t in tensors.items()}
        return update.with_tensors(out, defense=self.spec)

    def trial_transform(self, observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
        """GGL's adaptive clip: scale each restart's trial gradient down to the *observed* norm
        ``S := ‖y‖`` (per tensor with ``per_layer``), ``g · min(1, S / (‖g‖ + 1e-6))``."""
        if self.per_layer:
            bounds = [float(o.norm()) for o in observed]

            def per_layer(grads: GradList) -> GradList:
                return [_scale(g, (s / (g.reshape(g.shape[0], -1).norm(dim=1) + EPS)).clamp(max=1.0))
                        for g, s in zip(grads, bounds, strict=True)]
            return per_layer
        bound = float(torch.sqrt(sum((o.double() ** 2).sum() for o in observed)))  # type: ignore[arg-type]

        def clip_all(grads: GradList) -> GradList:
            norms = torch.sqrt(sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads))  # type: ignore[arg-type]
            factor = (bound / (norms + EPS)).clamp(max=1.0)
            return [_scale(g, factor) for g in grads]
        return clip_all


def _scale(g: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return g * factor.reshape(-1, *([1] * (g.dim() - 1)))
