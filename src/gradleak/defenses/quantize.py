"""Quantisation of the update: ``bits``-bit uniform levels per tensor, and ``sign`` (signSGD).

``quantize`` maps each tensor onto ``2**bits`` evenly spaced levels between its minimum and
maximum, rounding to the nearest level (deterministic, so an adaptive attacker can copy it
with a straight-through estimator). ``sign`` sends ``sign(g)`` (Bernstein et al., signSGD,
ICML 2018, arXiv 1802.04434).

Example:
    >>> import torch
    >>> from gradleak.core.types import ClientUpdate, GradList, TrialTransform
    >>> update = ClientUpdate.from_gradients({"w": torch.tensor([0.0, 0.4, 1.0])}, num_examples=1)
    >>> Quantize(bits=1)(update).tensors["w"].tolist()
    [0.0, 0.0, 1.0]
    >>> Sign()(update).tensors["w"].tolist()
    [0.0, 1.0, 1.0]
"""

from __future__ import annotations

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.types import ClientUpdate, GradList, TrialTransform
from gradleak.defenses.base import Defense


def quantize_tensor(t: torch.Tensor, bits: int, dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """Round ``t`` to ``2**bits`` uniform levels between its min and max (over ``dims``; all when None).

    Not differentiable (rounding); the adaptive attacker wraps it in a straight-through estimator.
    """
    dims = dims if dims is not None else tuple(range(t.dim()))
    if not dims:
        return t.clone()
    lo = t.amin(dim=dims, keepdim=True)
    hi = t.amax(dim=dims, keepdim=True)
    step = (hi - lo) / (2**bits - 1)
    safe = torch.where(step > 0, step, torch.ones_like(step))
    q = lo + torch.round((t - lo) / safe) * safe
    return torch.where(step > 0, q, t)


class Quantize(Defense):
    """Quantise each tensor to ``2**bits`` uniform levels between its min and max.

    Args:
        bits: bits per entry, 1 to 16.

    Raises:
        ConfigError: ``bits`` not an integer in ``[1, 16]``.
    """

    name = "quantize"

    def __init__(self, *, bits: int = 8) -> None:
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 16:
            raise ConfigError(f"quantize: bits must be an integer in [1, 16], got {bits!r}")
        self.bits = bits

    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None) -> ClientUpdate:
        out = {n: quantize_tensor(t, self.bits) for n, t in update.tensors.items()}
        return update.with_tensors(out, defense=self.spec)

    def trial_transform(self, observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
        """The same rounding per restart, with a straight-through gradient (identity backward)."""
        bits = self.bits

        def quantize(grads: GradList) -> GradList:
            return [straight_through(g, quantize_tensor(g.detach(), bits, tuple(range(1, g.dim()))))
                    for g in grads]
        return quantize


class Sign(Defense):
    """signSGD: send only the sign of every entry (``-1``, ``0`` or ``+1``)."""

    name = "sign"

    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None) -> ClientUpdate:
        return update.with_tensors({n: torch.sign(t) for n, t in update.tensors.items()}, defense=self.spec)

    def trial_transform(self, observed: GradList, names: list[str], model: nn.Module) -> TrialTransform:
        """``sign(g)`` scaled to the observed magnitude per tensor, straight-through backward."""
        scales = [float(o.abs().max()) for o in observed]

        def sign(grads: GradList) -> GradList:
            return [straight_through(g, torch.sign(g.detach()) * s) for g, s in zip(grads, scales, strict=True)]
        return sign


def straight_through(g: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the identity in the backward pass."""
    return g + (value - g).detach()
