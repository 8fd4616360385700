"""Soteria: perturbing the representation that feeds the last layer.

Sun, Li, Wang, Wu, Wang, Chen, Li (CVPR 2021, arXiv 2012.06043), "Soteria: Provable Defense
against Privacy Leakage in Federated Learning from Representation Perspective". For each
feature ``r_f`` of the input ``r`` of the last linear layer the client measures how much the
input moves it relative to its size, ``‖∂r_f/∂x‖ / (|r_f| + eps)`` (summed over the batch),
and zeroes the columns of the last layer's weight gradient for the features whose score falls
below the ``ratio`` percentile (GGL, arXiv 2203.15696, evaluates ``ratio = 0.8``). Needs the
client's inputs (the defense runs on the client) and a model whose last layer is
``nn.Linear`` — any such model, not only ResNet-18. Samples are scored independently; a
BatchNorm model in train mode is scored with its running statistics (eval mode). An adaptive
attacker applies the observed column mask to its trial gradient.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> x, y = torch.rand(1, 1, 8, 8), torch.tensor([3])
    >>> out = Soteria(ratio=0.8)(fedsgd_update(model, x, y), model=model, inputs=x)
    >>> int((out.tensors["6.weight"].abs().sum(0) == 0).sum()) >= 160   # last layer: 80 % of 200 columns
    True

Features that are dead for the batch (ReLU output 0) score 0 and so fall below the percentile
first: with ``ratio`` below the dead fraction the mask removes nothing that was not already zero.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
from torch import nn
from torch.func import jacrev, vmap

from gradleak.core.errors import ConfigError, NotApplicableError
from gradleak.core.types import ClientUpdate, GradList, TrialTransform
from gradleak.defenses.base import Defense
from gradleak.defenses.prune import check_ratio, smallest_mask
from gradleak.models.layers import has_batchnorm, last_linear

MAX_JACOBIAN = 20_000_000  # entries of one sample's Jacobian computed at once


def representation_scores(model: nn.Module, inputs: torch.Tensor, eps: float) -> torch.Tensor:
    """Soteria's per-feature score ``Σ_b ‖∂r_bf/∂x_b‖ / (|r_bf| + eps)`` for the last layer's input.

    Args:
        model: a model whose last ``nn.Linear`` receives a ``(B, F)`` representation.
        inputs: the client's pixels ``(B, C, H, W)``.
        eps: added to ``|r_f|`` so dead features do not divide by zero.

    Returns:
        ``(F,)`` scores; low means the feature reveals the input most cheaply.
    """
    found = last_linear(model)
    if found is None:
        raise NotApplicableError("soteria", ["the model has no nn.Linear layer to protect"])
    layer = found[1]

    def features(xi: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
        try:
            model(xi[None])
        finally:
            handle.remove()
        return captured[0][0]

    x = inputs.detach()
    with torch.no_grad():
        r = torch.stack([features(xi) for xi in x])
    if r.dim() != 2:
        raise NotApplicableError("soteria", [f"the last linear layer gets a {r.dim()}-d batched input; "
                                             "Soteria needs a (batch, features) representation"])
    size = x[0].numel()
    chunk = None if r.shape[1] * size <= MAX_JACOBIAN else max(1, MAX_JACOBIAN // size)
    jac = vmap(jacrev(features, chunk_size=chunk))(x)  # (B, F, C, H, W)
    norms = jac.reshape(r.shape[0], r.shape[1], -1).norm(dim=-1).double()
    ratios = norms / (r.abs().double() + eps)
    return ratios.sum(0)


class Soteria(Defense):
    """Mask the last layer's weight-gradient columns of the ``ratio`` least robust features.

    Args:
        ratio: fraction of features masked, in ``[0, 1)`` (GGL: 0.8; Soteria's code default 0.1).
        eps: stabiliser added to ``|r_f|`` in the score's denominator.

    Raises:
        ConfigError: ``ratio`` outside ``[0, 1)`` or ``eps`` negative; at call time, no inputs.
        NotApplicableError: the model has no last linear layer fed by a ``(B, F)`` tensor.
    """

    name = "soteria"
    needs_inputs: ClassVar[bool] = True

    def __init__(self, *, ratio: float = 0.8, eps: float = 0.1) -> None:
        self.ratio = check_ratio("soteria", ratio)
        if not (isinstance(eps, (int, float)) and eps >= 0 and math.isfinite(eps)):
            raise ConfigError(f"soteria: eps must be a finite number >= 0, got {eps!r}")
        self.eps = float(eps)

    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None,
                 inputs: torch.Tensor | None = None) -> ClientUpdate:
        if model is None or inputs is None:
            raise ConfigError("soteria runs on the client: call it with model= and the client's inputs=")
        found = last_linear(model)
        if found is None:
            raise NotApplicableError("soteria", ["the model has no nn.Linear layer to protect"])
        key = f"{found[0]}.weight" if found[0] else "weight"
        # BatchNorm in train mode couples samples (and cannot be vectorised): score with the
        # running statistics instead, on a copy so the client's buffers are untouched
        scoring = copy.deepcopy(model).eval() if model.training and has_batchnorm(model) else model
        with torch.enable_grad():
            scores = representation_scores(scoring, inputs, self.eps)
        keep = smallest_mask(scores, self.ratio)
        out = dict(update.tensors)
        out[key] = update.tensors[key] * keep.to(update.tensors[key].dtype)[None, :]
        return update.with_tensors(out, defense=self.spec)

    def trial_transform(self, observed: GradList, names: list[str], model: nn.Module) -> TrialTransform | None:
        """Multiply the last linear layer's weight gradient by the observed column mask."""
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
