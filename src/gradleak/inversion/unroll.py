"""The client's optimiser as pure tensor functions, so an attacker can unroll local training.

:func:`optimiser_step` is one step of what :func:`gradleak.fl.client.local_sgd` runs with
``torch.optim`` — SGD (momentum, Nesterov, weight decay), Adam and AdamW, plus FedProx's proximal
term — written out functionally: parameters in, parameters out, no in-place updates, so the
result stays differentiable in the data the gradients came from (``torch.func.grad`` /
``vmap`` work through it). It follows ``torch.optim``'s single-tensor code path step by step,
so a simulated delta equals the client's to float rounding
(``tests/attacks/test_fedavg_unrolled.py`` checks every optimiser).

Adam's ``sqrt(v)`` is taken through a guarded square root: an entry whose second moment is
exactly zero (a dead ReLU's weights) gets a zero derivative instead of ``inf · 0 = NaN``.

Example:
    >>> import torch
    >>> from gradleak.core.types import LocalTraining
    >>> local = LocalTraining(lr=0.1, momentum=0.9)
    >>> p, g = {"w": torch.ones(2)}, {"w": torch.full((2,), 0.5)}
    >>> state = {}
    >>> p = optimiser_step(p, g, p, local, state, 1)
    >>> p["w"].tolist()
    [0.949999988079071, 0.949999988079071]
"""

from __future__ import annotations

import math

import torch

from gradleak.core.types import LocalTraining

Tensors = dict[str, torch.Tensor]


def _sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` for ``v >= 0`` whose derivative at 0 is 0 (not inf)."""
    positive = v > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, v, torch.ones_like(v))), torch.zeros_like(v))


def optimiser_step(params: Tensors, grads: Tensors, start: Tensors, local: LocalTraining, state: Tensors,
                   step: int) -> Tensors:
    """One step of the client's optimiser; returns the new parameters and updates ``state`` in place.

    Args:
        params: the current parameters.
        grads: the loss gradient at ``params`` (FedProx's term is added here).
        start: the weights the client received (FedProx's anchor).
        local: the optimiser and its settings.
        state: the optimiser's buffers (``{}`` before the first step); the dict is updated with
            new tensors (momentum buffer, Adam's moments), never written into.
        step: the step number, from 1 (Adam's bias correction).
    """
    out: Tensors = {}
    for name, p in params.items():
        g = grads[name]
        if local.prox_mu:
            g = g + local.prox_mu * (p - start[name])
        if local.optimizer == "sgd":
            out[name] = p - local.lr * _sgd_direction(name, p, g, local, state)
            continue
        if local.weight_decay and local.optimizer == "adamw":
            p = p * (1 - local.lr * local.weight_decay)
        elif local.weight_decay:
            g = g + local.weight_decay * p
        b1, b2 = local.betas
        m = g * (1 - b1) if step == 1 else state[f"m.{name}"] * b1 + g * (1 - b1)
        v = g * g * (1 - b2) if step == 1 else state[f"v.{name}"] * b2 + g * g * (1 - b2)
        state[f"m.{name}"], state[f"v.{name}"] = m, v
        denom = _sqrt(v) / math.sqrt(1 - b2 ** step) + local.eps
        out[name] = p - (local.lr / (1 - b1 ** step)) * m / denom
    return out


def _sgd_direction(name: str, p: torch.Tensor, g: torch.Tensor, local: LocalTraining, state: Tensors) -> torch.Tensor:
    if local.weight_decay:
        g = g + local.weight_decay * p
    if not local.momentum:
        return g
    key = f"buf.{name}"
    buf = g if key not in state else state[key] * local.momentum + g
    state[key] = buf
    return g + local.momentum * buf if local.nesterov else buf


def effective_steps(local: LocalTraining, num_examples: int) -> float:
    """``T_eff``: how many plain-SGD steps of one constant gradient SGD's delta amounts to.

    With momentum ``m`` (dampening 0) step ``t`` moves by ``(1 − mᵗ)/(1 − m)`` gradients, with
    Nesterov by ``1 + m(1 − mᵗ)/(1 − m)``; without momentum by 1, so ``T_eff = T``. Dividing a
    delta by ``−lr · T_eff`` gives the average gradient: exact for one step, an approximation
    for several (the gradient changes along the way).

    Example:
        >>> effective_steps(LocalTraining(lr=0.1, steps=2, momentum=0.5), 4)
        2.5
    """
    steps = local.num_steps(num_examples)
    m = local.momentum
    if not m:
        return float(steps)
    grown = [(1 - m ** t) / (1 - m) for t in range(1, steps + 1)]
    return float(sum(1 + m * c for c in grown) if local.nesterov else sum(grown))
