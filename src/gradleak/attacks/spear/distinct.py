"""Duplicated inputs: a gradient of rank ``d < b`` comes from ``d`` distinct inputs.

Two identical inputs ``x`` add up to one rank-one term ``(g_u + g_v) xᵀ`` of ``∂L/∂W``, so
SPEAR recovers ``d`` distinct inputs and, for each, the *sum* of its copies' columns of
``∂L/∂Z``. The server knows the whole model, so it can compute what one copy with label ``y``
contributes, ``γ_y(x) = ∂ℓ(f(x), y)/∂z / b`` (mean-reduced loss), and fit the column as
``Σ_y c_y γ_y`` with ``c_y ≥ 0``: the rounded ``Σ_y c_y`` is how often ``x`` occurs (and the
``c_y`` say with which labels). gradleak's addition; the paper assumes distinct inputs.
The same fit gives the labels with which a FedAvg client's local training is replayed to
verify a reconstruction (:func:`make_replay`, used by :mod:`~gradleak.attacks.spear.verify`).

Example:
    >>> import torch
    >>> expand(torch.tensor([[1.0], [2.0]]), torch.tensor([2, 1]), 3).flatten().tolist()
    [1.0, 1.0, 2.0]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gradleak.attacks.spear.verify import Replay
from gradleak.core.types import ClientUpdate
from gradleak.fl.client import local_sgd


def copy_columns(model: nn.Module, layer: nn.Linear, X: torch.Tensor, b: int,
                 shape: Sequence[int]) -> torch.Tensor:
    """``γ`` ``(d, K, m)``: the column one copy of each input ``X[i]`` with label ``k`` adds to
    ``∂L/∂Z`` of ``layer`` (mean-reduced cross-entropy over ``b`` samples, float64, eval mode)."""
    net = copy.deepcopy(model).double().eval()
    target = dict(model.named_modules())
    first = next(mod for name, mod in net.named_modules() if target.get(name) is layer)
    d = X.shape[0]
    with torch.no_grad():
        k = net(torch.zeros(1, *shape, dtype=torch.float64)).shape[-1]
    z = (X.double() @ first.weight.detach().T + first.bias.detach()).repeat_interleave(k, 0)
    z.requires_grad_(True)
    hook = first.register_forward_hook(lambda mod, args, out: z)
    try:
        logits = net(torch.zeros(d * k, *shape, dtype=torch.float64))
    finally:
        hook.remove()
    labels = torch.arange(k).repeat(d)
    loss = F.cross_entropy(logits, labels, reduction="sum") / b
    (grad,) = torch.autograd.grad(loss, z)
    return grad.reshape(d, k, -1)


def label_fit(model: nn.Module, layer: nn.Linear, X: torch.Tensor, G: torch.Tensor, b: int,
              shape: Sequence[int]) -> tuple[torch.Tensor, list[list[int]]]:
    """How often each of the ``d`` distinct inputs ``X`` (layer inputs, ``(d, n)``) occurs among
    ``b``, and with which labels, from its recovered column ``G[:, i]``: a non-negative fit per
    label, rounded (at least 1 copy; the total adjusted to ``b`` by the largest remainders)."""
    from scipy.optimize import nnls  # imported here: keeps `import gradleak` fast

    gamma = copy_columns(model, layer, X, b, shape)
    coef = torch.stack([torch.as_tensor(nnls(gamma[i].T.numpy(), G[:, i].numpy())[0])
                        for i in range(X.shape[0])]).double()
    coef = torch.where(torch.isfinite(coef), coef, torch.zeros_like(coef)).clamp(0, b)
    raw = coef.sum(1).clamp(1, b)
    counts = raw.round().long()
    for _ in range(abs(int(counts.sum()) - b)):   # each step moves the total one towards b
        more = int(counts.sum()) < b
        gap = (raw - counts) if more else (counts - raw).masked_fill(counts <= 1, -math.inf)
        counts[int(gap.argmax())] += 1 if more else -1
    labels = []
    for i in range(X.shape[0]):
        left, mine = coef[i].clone(), []
        for _ in range(int(counts[i])):
            k = int(left.argmax())
            mine.append(k)
            left[k] -= 1
        labels.append(mine)
    return counts, labels


def multiplicities(model: nn.Module, layer: nn.Linear, X: torch.Tensor, G: torch.Tensor, b: int,
                   shape: Sequence[int]) -> torch.Tensor:
    """How often each distinct input occurs (the counts of :func:`label_fit`)."""
    return label_fit(model, layer, X, G, b, shape)[0]


def expand(X: torch.Tensor, counts: torch.Tensor, b: int) -> torch.Tensor:
    """``X`` with each row repeated ``counts[i]`` times (``b`` rows in all)."""
    out = X.repeat_interleave(counts.clamp_min(0), dim=0)
    return out[:b]


def make_replay(model: nn.Module, name: str, layer: nn.Linear, update: ClientUpdate,
                shape: Sequence[int], to_pixels: Callable[[torch.Tensor], torch.Tensor]) -> Replay | None:
    """For a FedAvg delta of full-batch local steps: ``replay(X, G)`` runs the client's local
    training on the recovered batch (labels from :func:`label_fit`, float64, same weights) and
    returns the relative residuals of ``layer``'s weight and bias deltas. ``None`` for
    mini-batch steps (the client's shuffling is unknown) and for FedSGD gradients."""
    local, b = update.local_training, update.num_examples
    if update.kind != "weight_delta" or local is None or (local.batch_size or b) < b:
        return None
    target_w = update.tensors[f"{name}.weight"].detach().double()
    target_b = update.tensors[f"{name}.bias"].detach().double()
    start_w, start_b = layer.weight.detach().double(), layer.bias.detach().double()

    def replay(X: torch.Tensor, G: torch.Tensor) -> tuple[float, float]:
        counts, labels = label_fit(model, layer, X, G, b, shape)
        net = copy.deepcopy(model).double().eval()
        local_sgd(net, to_pixels(expand(X, counts, b)), torch.tensor(sum(labels, [])), local)
        mod = dict(net.named_modules())[name]
        res_w = (mod.weight.detach() - start_w - target_w).norm() / target_w.norm().clamp_min(1e-300)
        res_b = (mod.bias.detach() - start_b - target_b).norm() / target_b.norm().clamp_min(1e-300)
        return float(res_w), float(res_b)

    return replay
