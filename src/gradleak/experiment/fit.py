"""How well a reconstruction explains the update it came from, and a warning when it does not.

Every attack's output is judged the same way, whatever loss the attack itself minimised: the
server recomputes the update the reconstruction would have produced — the FedSGD gradient of
its images and labels, or the FedAvg weight delta of the client's local training run on them,
with the model in the client's BatchNorm/dropout mode and, for an adaptive attacker, through
the copied defense — and compares it with the observed update:

* ``cosine_distance`` — ``1 − cos(g̃, g)`` over all tensors jointly (0 = same direction);
* ``relative_l2`` — ``‖g̃ − g‖ / ‖g‖`` (0 = identical; 1 = no better than sending zeros).

Exact attacks (``Attack.exact``, e.g. SPEAR) also report ``residual``: the share of the first
``nn.Linear`` layer's weight gradient that lies outside the span of the inputs the
reconstruction feeds that layer (``‖G − G X⁺X‖ / ‖G‖``, 0 for an exact recovery); it needs
no labels. When a reconstruction has no labels (SPEAR with ``labels=none``), the gradient is
not recomputed and only the residual is reported.

A fit is *poor* when ``cosine_distance`` exceeds :data:`POOR_COSINE` (or, for exact attacks,
``residual`` exceeds :data:`POOR_RESIDUAL`); :func:`fit_warning` then names the likely
causes. The thresholds were chosen on calibration seeds that are not the ones reported
(``bench/bench_fit.py``, ``docs/results/fit.md``).

Example:
    >>> import torch
    >>> from gradleak.core.types import Reconstruction
    >>> from gradleak.fl import fedsgd_update
    >>> from gradleak.models import build_model
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([3, 5])
    >>> update = fedsgd_update(model, x, y)
    >>> fit = fit_report(model, update, Reconstruction(x, y))
    >>> fit["cosine_distance"] < 1e-6, fit["poor"]
    (True, False)
    >>> fit_report(model, update, Reconstruction(torch.rand(2, 1, 8, 8), y))["poor"]
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gradleak.core.types import ClientUpdate, Reconstruction, TrialTransform
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.models.layers import has_batchnorm

POOR_COSINE = 0.1
"""A reconstruction whose update has a cosine distance above this to the observed one is a poor fit."""

POOR_RESIDUAL = 1e-2
"""An exact attack whose first-layer residual is above this did not recover the batch exactly."""


def reconstruction_update(model: nn.Module, update: ClientUpdate, inputs: torch.Tensor,
                          labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The update ``(inputs, labels)`` would have produced under ``update``'s protocol and the model's mode."""
    mode = "train" if model.training else "eval"
    if update.kind == "weight_delta":
        assert update.local_training is not None  # guaranteed by ClientUpdate
        made = fedavg_update(model, inputs, labels.long(), update.local_training, mode=mode, seed=0)
    else:
        made = fedsgd_update(model, inputs, labels.long(), mode=mode)
    return dict(made.tensors)


def gradient_distances(trial: Mapping[str, torch.Tensor], observed: Mapping[str, torch.Tensor],
                       names: list[str]) -> tuple[float, float]:
    """``(cosine_distance, relative_l2)`` of two updates over ``names``, in float64.

    Example:
        >>> g = {"w": torch.tensor([1.0, 0.0])}
        >>> gradient_distances({"w": torch.tensor([2.0, 0.0])}, g, ["w"])
        (0.0, 1.0)
    """
    dot = diff = n_trial = n_obs = 0.0
    for name in names:
        a, b = trial[name].detach().double().flatten(), observed[name].detach().double().flatten()
        dot += float(a @ b)
        diff += float((a - b).pow(2).sum())
        n_trial += float(a.pow(2).sum())
        n_obs += float(b.pow(2).sum())
    cosine = 1.0 - dot / math.sqrt(n_trial * n_obs) if n_trial > 0 and n_obs > 0 else 1.0
    relative = math.sqrt(diff / n_obs) if n_obs > 0 else math.inf
    return max(0.0, cosine), relative


def first_layer_residual(model: nn.Module, update: ClientUpdate, inputs: torch.Tensor) -> float | None:
    """``‖G − G X⁺X‖ / ‖G‖`` for the first ``nn.Linear`` (``X``: its inputs on the reconstruction).

    ``None`` when the model has no ``nn.Linear`` or its weight is not in the update.
    """
    layer = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)), None)
    if layer is None or f"{layer[0]}.weight" not in update.tensors:
        return None
    captured: list[torch.Tensor] = []
    handle = layer[1].register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    X = captured[0].reshape(captured[0].shape[0], -1).double()
    G = update.tensors[f"{layer[0]}.weight"].detach().double()
    norm = float(G.norm())
    if norm == 0:
        return None
    projected = G @ torch.linalg.pinv(X) @ X
    return float((G - projected).norm()) / norm


def fit_report(model: nn.Module, update: ClientUpdate, rec: Reconstruction, *, exact: bool = False,
               transform: TrialTransform | None = None) -> dict[str, Any]:
    """How well ``rec`` explains ``update`` (see the module docstring for each value).

    Args:
        model: the attacked model, in the client's mode.
        update: the update as the attack saw it.
        rec: the attack's output.
        exact: the attack claims an exact recovery (also report the first-layer residual).
        transform: an adaptive attacker's copy of the defenses, applied to the recomputed gradient.

    Returns:
        ``cosine_distance``, ``relative_l2`` (``None`` without labels), ``residual`` (exact
        attacks), ``poor`` and the thresholds used.
    """
    names = [n for n, _ in model.named_parameters() if n in update.tensors]
    out: dict[str, Any] = {"cosine_distance": None, "relative_l2": None, "residual": None,
                           "poor_cosine": POOR_COSINE}
    inputs = rec.inputs.detach().float()
    if rec.labels is not None and rec.labels.numel() == inputs.shape[0]:
        trial = reconstruction_update(model, update, inputs, rec.labels)
        if transform is not None and update.kind == "gradients":
            moved = transform([trial[n][None] for n in names])
            trial = {n: t[0] for n, t in zip(names, moved)}
        out["cosine_distance"], out["relative_l2"] = gradient_distances(trial, update.tensors, names)
    if exact:
        out["residual"], out["poor_residual"] = first_layer_residual(model, update, inputs), POOR_RESIDUAL
    poor = out["cosine_distance"] is not None and not out["cosine_distance"] <= POOR_COSINE
    if exact and out["residual"] is not None:
        poor = not out["residual"] <= POOR_RESIDUAL
    out["poor"] = bool(poor)
    return out


def fit_warning(fit: Mapping[str, Any], update: ClientUpdate, model: nn.Module, *,
                labels_from: str | None = None) -> str | None:
    """One paragraph naming the likely causes of a poor fit (``None`` when the fit is good)."""
    if not fit.get("poor"):
        return None
    if all(float(t.detach().abs().max()) == 0 for t in update.tensors.values() if t.numel()):
        return ("the update is all zeros: it carries no information about the client's data, so no "
                "reconstruction can explain it (check that the file holds the client's update)")
    figures = []
    if fit.get("residual") is not None:
        figures.append(f"first-layer residual {fit['residual']:.3g} (exact: below {POOR_RESIDUAL:g})")
    if fit.get("cosine_distance") is not None:
        figures.append(f"gradient cosine distance {fit['cosine_distance']:.3g} (good: below {POOR_COSINE:g}), "
                       f"relative L2 {fit['relative_l2']:.3g}")
    causes = ["the model's weights are not the ones the client trained from (pass them with --checkpoint; "
              "an untrained or differently seeded model cannot explain the update)"]
    if labels_from not in (None, "known"):
        causes.append(f"wrong labels (restored by {labels_from!r}; use --labels known if they leak, or "
                      "another method from 'gradleak check')")
    if update.kind == "weight_delta":
        causes.append("wrong local-training settings (--local-lr, --local-epochs, --local-batch-size, "
                      "--local-steps must be the client's)")
    if has_batchnorm(model) or any(isinstance(m, nn.Dropout) for m in model.modules()):
        causes.append("the wrong BatchNorm/dropout mode (--bn train|eval must match the client's pass)")
    if update.defenses:
        causes.append(f"the client's defense ({', '.join(update.defenses)}) changed the update; no "
                      "reconstruction explains a noised or masked update exactly")
    causes.append("a wrong --num-examples, or an attack stopped before it converged (more --steps or "
                  "--restarts)")
    return ("the reconstruction explains the update poorly: " + "; ".join(figures) + ". Likely causes: "
            + "; ".join(f"({i}) {c}" for i, c in enumerate(causes, 1)) + ".")
