"""The client side of FL: what a client computes and sends.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([3, 5])
    >>> update = fedsgd_update(model, x, y)
    >>> update.kind, update.num_examples
    ('gradients', 2)
"""

from __future__ import annotations

import copy
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.types import ClientUpdate, LocalTraining
from gradleak.core.validate import labels_problem, tensor_problem

Mode = Literal["train", "eval"]


class LocalTrainer(Protocol):
    """A defense that changes how the client trains (DP-SGD, MixUp), passed as ``trainer``."""

    def gradient(self, model: nn.Module, inputs: torch.Tensor,
                 labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The FedSGD gradient the client computes, keyed by parameter name."""
        ...

    def train(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
              local: LocalTraining, *, seed: int = 0) -> nn.Module:
        """Local training in place (replaces :func:`local_sgd`)."""
        ...


def _client_copy(model: nn.Module, mode: Mode, inputs: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    """A copy of ``model`` for the client, after checking the batch fits it (one line per problem)."""
    if mode not in ("train", "eval"):
        raise ConfigError(f"mode must be 'train' or 'eval', got {mode!r}")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    problem = tensor_problem("inputs", inputs, what="client")
    if problem is None and (inputs.dim() < 2 or inputs.shape[0] < 1):
        problem = f"client inputs must be a batch (B, C, H, W) with B >= 1, got shape {tuple(inputs.shape)}"
    problem = problem or labels_problem(labels, int(inputs.shape[0]), "client labels")
    if problem is None and not torch.isfinite(inputs).all():
        problem = "client inputs contain NaN or inf"
    if problem:
        raise ConfigError(problem)
    client = copy.deepcopy(model)
    client.eval()  # a shape check that cannot touch BatchNorm's running statistics
    try:
        with torch.no_grad():
            logits = client(inputs[:1])
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"the model cannot run on inputs of shape {tuple(inputs.shape)} ({first[:200]}); "
                          "pass pixels of the shape the model was built for") from None
    if logits.dim() != 2:
        raise ConfigError(f"the model returns shape {tuple(logits.shape)}; a classifier returns (B, classes)")
    if labels.numel() and int(labels.max()) >= logits.shape[1]:
        raise ConfigError(f"client labels reach class {int(labels.max())} but the model has "
                          f"{logits.shape[1]} classes (0..{logits.shape[1] - 1})")
    client.train(mode == "train")
    return client


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in model.named_buffers() if "running" in n or "num_batches" in n}


def fedsgd_update(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    mode: Mode = "eval",
    share_buffers: bool = False,
    labels_leak: bool = False,
    trainer: LocalTrainer | None = None,
) -> ClientUpdate:
    """One FedSGD gradient of the mean-reduced cross-entropy on ``(inputs, labels)``.

    Args:
        model: the global model (left untouched: the client works on a copy).
        inputs: pixels in ``[0, 1]``, ``(B, C, H, W)``.
        labels: ``(B,)`` integer labels.
        mode: ``"train"`` or ``"eval"`` for BatchNorm/dropout, chosen explicitly.
        share_buffers: send BN running statistics (after the forward pass) too.
        labels_leak: put the labels in the update (a threat model where they leak).
        trainer: a training defense (DP-SGD, MixUp) that computes the gradient instead.
    """
    client = _client_copy(model, mode, inputs, labels)
    params = dict(client.named_parameters())
    if trainer is not None:
        named = trainer.gradient(client, inputs, labels)
    else:
        loss = F.cross_entropy(client(inputs), labels)
        named = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    return ClientUpdate.from_gradients(
        named,
        num_examples=int(inputs.shape[0]),
        buffers=_buffers(client) if share_buffers else None,
        labels=labels.clone() if labels_leak else None,
    )


def make_optimizer(params: list[nn.Parameter], local: LocalTraining) -> torch.optim.Optimizer:
    """The client's ``torch.optim`` optimiser for ``local`` (SGD with momentum/Nesterov, Adam, AdamW).

    Example:
        >>> p = [nn.Parameter(torch.zeros(2))]
        >>> type(make_optimizer(p, LocalTraining(lr=0.1, optimizer="adamw"))).__name__
        'AdamW'
    """
    if local.optimizer == "sgd":
        return torch.optim.SGD(params, lr=local.lr, momentum=local.momentum, weight_decay=local.weight_decay,
                               nesterov=local.nesterov)
    adam = torch.optim.Adam if local.optimizer == "adam" else torch.optim.AdamW
    return adam(params, lr=local.lr, betas=local.betas, eps=local.eps, weight_decay=local.weight_decay)


def local_sgd(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, local: LocalTraining, *, seed: int = 0
) -> nn.Module:
    """Run the client's local training in place: ``local.epochs`` shuffled passes (or ``local.steps`` steps).

    The optimiser is ``local``'s (:func:`make_optimizer`); with ``local.prox_mu > 0`` the loss
    gains FedProx's proximal term ``mu/2 * sum ||w - w_start||^2`` (``w_start``: the weights
    the client received).
    """
    n = int(inputs.shape[0])
    bs = local.batch_size or n
    total = local.num_steps(n)
    gen = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    start = [p.detach().clone() for p in params]
    opt = make_optimizer(params, local)
    step = 0
    while step < total:
        order = torch.randperm(n, generator=gen).to(inputs.device)  # drawn on the CPU: same on every device
        for begin in range(0, n, bs):
            if step >= total:
                break
            idx = order[begin:begin + bs]
            opt.zero_grad()
            loss = F.cross_entropy(model(inputs[idx]), labels[idx])
            if local.prox_mu:
                loss = loss + local.prox_mu / 2 * sum(((p - s) ** 2).sum() for p, s in zip(params, start))
            loss.backward()
            opt.step()
            step += 1
    return model


def fedavg_update(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    local: LocalTraining,
    *,
    mode: Mode = "eval",
    seed: int = 0,
    share_buffers: bool = False,
    labels_leak: bool = False,
    trainer: LocalTrainer | None = None,
) -> ClientUpdate:
    """A FedAvg update: the weight delta ``W_after - W_before`` after real local SGD.

    Args:
        model: the global model (left untouched).
        inputs, labels: the client's local data.
        local: lr, epochs, local batch size (and optionally a fixed number of steps).
        mode: BatchNorm/dropout mode during local training.
        seed: seeds the shuffling of mini-batches.
        share_buffers: send BN running statistics after training.
        labels_leak: put the labels in the update.
        trainer: a training defense (DP-SGD, MixUp) that runs local training instead.
    """
    if not isinstance(local, LocalTraining):
        raise ConfigError(f"local must be a LocalTraining(lr=..., epochs=..., batch_size=...), got {local!r}")
    client = _client_copy(model, mode, inputs, labels)
    before = {n: p.detach().clone() for n, p in client.named_parameters()}
    (trainer.train if trainer is not None else local_sgd)(client, inputs, labels, local, seed=seed)
    after = {n: p.detach().clone() for n, p in client.named_parameters()}
    return ClientUpdate.from_weights(
        before, after, int(inputs.shape[0]), local,
        buffers=_buffers(client) if share_buffers else None,
        labels=labels.clone() if labels_leak else None,
    )
