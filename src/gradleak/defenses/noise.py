"""Additive noise on the update: Gaussian (``sigma``) or Laplace (``scale``) per entry.

The "additive noise" defense of GGL (Li et al., CVPR 2022, arXiv 2203.15696), Table 3:
``g + N(0, σ²)`` on every entry, σ = 0.1 in the paper (0.01 in its code). Laplace noise is
the local-DP variant. The noise comes from a seeded generator, so a run repeats exactly.
An adaptive attacker cannot undo it (there is no deterministic part to copy).

Example:
    >>> import torch
    >>> from gradleak.core.types import ClientUpdate
    >>> update = ClientUpdate.from_gradients({"w": torch.zeros(3)}, num_examples=1)
    >>> noisy = GaussianNoise(sigma=0.1, seed=0)(update)
    >>> noisy.defenses
    ('noise:kind=gaussian,sigma=0.1',)
    >>> bool((noisy.tensors["w"] != 0).all())
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.types import ClientUpdate
from gradleak.defenses.base import Defense

KINDS = ("gaussian", "laplace")


class GaussianNoise(Defense):
    """Add i.i.d. noise to every entry of every tensor of the update.

    Args:
        sigma: standard deviation of Gaussian noise (default 0.1, GGL's paper setting).
        scale: scale ``b`` of Laplace noise (density ``exp(-|x|/b) / 2b``); giving it picks Laplace.
        kind: ``gaussian`` or ``laplace`` (inferred from ``sigma``/``scale`` when omitted).
        seed: seeds the noise (filled in by ``build_defenses``).

    Raises:
        ConfigError: negative or non-finite magnitude, an unknown kind, or a magnitude that
            does not belong to the kind (``sigma`` with Laplace, ``scale`` with Gaussian).
    """

    name = "noise"
    takes_seed = True

    def __init__(self, *, sigma: float | None = None, scale: float | None = None,
                 kind: str | None = None, seed: int = 0) -> None:
        if kind is None:
            kind = "laplace" if scale is not None else "gaussian"
        if kind not in KINDS:
            raise ConfigError(f"noise: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if kind == "gaussian" and scale is not None:
            raise ConfigError("noise: Gaussian noise takes sigma, not scale (use kind=laplace for scale)")
        if kind == "laplace" and sigma is not None:
            raise ConfigError("noise: Laplace noise takes scale, not sigma (use kind=gaussian for sigma)")
        magnitude = float(0.1 if (sigma if kind == "gaussian" else scale) is None
                          else (sigma if kind == "gaussian" else scale))  # type: ignore[arg-type]
        if not (magnitude >= 0 and math.isfinite(magnitude)):
            what = "sigma" if kind == "gaussian" else "scale"
            raise ConfigError(f"noise: {what} must be a finite number >= 0, got {magnitude}")
        self.kind = kind
        if kind == "gaussian":
            self.sigma = magnitude
        else:
            self.scale = magnitude
        self._magnitude = magnitude
        self._seed = int(seed)

    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None) -> ClientUpdate:
        gen = torch.Generator().manual_seed(self._seed)
        out = {}
        for name, tensor in update.tensors.items():
            if self._magnitude == 0:
                out[name] = tensor.clone()
                continue
            if self.kind == "gaussian":
                noise = torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype).to(tensor.device)
            else:  # Laplace by inverse CDF of a uniform in (-1/2, 1/2)
                u = torch.rand(tensor.shape, generator=gen, dtype=torch.float64).clamp(1e-12, 1 - 1e-12) - 0.5
                noise = (-torch.sign(u) * torch.log1p(-2 * u.abs())).to(tensor.device, tensor.dtype)
            out[name] = tensor + self._magnitude * noise
        return update.with_tensors(out, defense=self.spec)
