"""The three kinds of data that never mix: what the server sees, the truth, the output.

* :class:`ClientUpdate` — what a client sends; the only thing an attack receives.
* :class:`GroundTruth` — the client's real data; only the experiment and metrics see it.
* :class:`Reconstruction` — what an attack returns, in pixel space ``[0, 1]``.

Example:
    >>> import torch
    >>> from gradleak.core.types import ClientUpdate
    >>> model = torch.nn.Linear(4, 2)
    >>> grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    >>> update = ClientUpdate.from_gradients(grads, num_examples=1)
    >>> update.kind
    'gradients'
    >>> update.validate(model)  # raises UpdateMismatchError when it does not fit
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from gradleak.core.errors import ConfigError, UpdateMismatchError

UpdateKind = Literal["gradients", "weight_delta"]

Progress = Callable[[int, int, float], None]
"""``progress(step, total, loss)``: called by long computations as they run (for progress bars)."""

GradList = list[torch.Tensor]
"""Gradients in ``model.named_parameters()`` order, each with a leading restart dimension ``R``."""

TrialTransform = Callable[[GradList], GradList]
"""An adaptive attacker's copy of a defense, applied to trial gradients (see ``gradleak.defenses``)."""


@dataclass(frozen=True)
class LocalTraining:
    """The client's local-training settings, chosen by the server (so attacks may use them).

    Args:
        lr: learning rate of the client's optimiser.
        epochs: local epochs over the client's data.
        batch_size: local mini-batch size; ``None`` means the whole local data set.
        steps: total local SGD steps; ``None`` derives ``epochs * ceil(n / batch_size)``.
        optimizer: ``sgd`` (``torch.optim.SGD``), ``adam`` (``torch.optim.Adam``, L2 weight
            decay) or ``adamw`` (``torch.optim.AdamW``, decoupled weight decay).
        momentum: SGD momentum (dampening 0), in ``[0, 1)``.
        nesterov: Nesterov momentum (SGD with ``momentum > 0``).
        weight_decay: the optimiser's weight decay (``>= 0``).
        prox_mu: FedProx's proximal term ``mu/2 * ||w - w_global||^2`` added to the local loss.
        betas, eps: Adam's moment decays and denominator term.

    Example:
        >>> LocalTraining(lr=0.1, epochs=1, batch_size=2).num_steps(4)
        2
        >>> LocalTraining(lr=0.1, optimizer="adam", momentum=0.9)
        Traceback (most recent call last):
        ...
        gradleak.core.errors.ConfigError: invalid local training: momentum applies to optimizer 'sgd' (adam uses betas)
    """

    lr: float = 0.1
    epochs: int = 1
    batch_size: int | None = None
    steps: int | None = None
    optimizer: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    prox_mu: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        problems = []
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr must be a positive finite number, got {self.lr}")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"local batch_size must be >= 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        problems += self._optimiser_problems()
        if problems:
            raise ConfigError("invalid local training: " + "; ".join(problems))

    def _optimiser_problems(self) -> list[str]:
        """What is wrong with the optimiser fields (the fields after ``steps``)."""
        problems = []
        try:  # a JSON list reads back as a tuple
            object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
            betas_ok = len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)
        except (TypeError, ValueError):
            betas_ok = False
        if not betas_ok:
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            problems.append(f"optimizer must be 'sgd', 'adam' or 'adamw', got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        elif self.momentum and self.optimizer != "sgd":
            problems.append(f"momentum applies to optimizer 'sgd' ({self.optimizer} uses betas)")
        if self.nesterov and (self.optimizer != "sgd" or not self.momentum):
            problems.append("nesterov needs optimizer 'sgd' with momentum > 0")
        for name in ("weight_decay", "prox_mu"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                problems.append(f"{name} must be a finite number >= 0, got {value}")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            problems.append(f"eps must be a positive finite number, got {self.eps}")
        return problems

    def num_steps(self, num_examples: int) -> int:
        """Local SGD steps taken on ``num_examples`` examples."""
        if self.steps is not None:
            return self.steps
        bs = self.batch_size or num_examples
        return self.epochs * math.ceil(num_examples / bs)


@dataclass(frozen=True)
class ClientUpdate:
    """What a client sends to the server — and so everything an attack may use.

    Args:
        kind: ``"gradients"`` (FedSGD) or ``"weight_delta"`` (FedAvg, ``W_after - W_before``).
        tensors: the gradients or the weight delta, keyed by parameter name.
        num_examples: the client's number of training examples (FedAvg's weight).
        local_training: local SGD settings the server chose (needed for ``weight_delta``).
        buffers: BatchNorm running statistics, only if the protocol shares them.
        labels: the client's labels, only if the threat model says they leak.
        defenses: names (with settings) of defenses applied, for an adaptive attacker.
        meta: free-form facts the server legitimately knows (e.g. a defense's public settings).
    """

    kind: UpdateKind
    tensors: Mapping[str, torch.Tensor]
    num_examples: int
    local_training: LocalTraining | None = None
    buffers: Mapping[str, torch.Tensor] | None = None
    labels: torch.Tensor | None = None
    defenses: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("gradients", "weight_delta"):
            raise ConfigError(f"update kind must be 'gradients' or 'weight_delta', got {self.kind!r}")
        if self.num_examples < 1:
            raise ConfigError(f"num_examples must be >= 1, got {self.num_examples}")
        if self.kind == "weight_delta" and self.local_training is None:
            raise ConfigError(
                "a weight_delta update needs local_training (lr, epochs, batch_size): "
                "the server chose them, so pass LocalTraining(...)"
            )

    @classmethod
    def from_gradients(
        cls, gradients: Mapping[str, torch.Tensor], num_examples: int, **kwargs: Any
    ) -> ClientUpdate:
        """An FedSGD update from gradients keyed by parameter name."""
        tensors = {k: v.detach().clone() for k, v in gradients.items()}
        return cls("gradients", tensors, num_examples, **kwargs)

    @classmethod
    def from_weights(
        cls,
        before: Mapping[str, torch.Tensor],
        after: Mapping[str, torch.Tensor],
        num_examples: int,
        local_training: LocalTraining,
        **kwargs: Any,
    ) -> ClientUpdate:
        """A FedAvg update from the weights the server sent and the weights it got back."""
        missing = sorted(set(before) ^ set(after))
        if missing:
            raise UpdateMismatchError(f"before/after weights differ in names: {missing[:5]}")
        delta = {k: (after[k].detach() - before[k].detach()).clone() for k in before}
        return cls("weight_delta", delta, num_examples, local_training, **kwargs)

    def with_tensors(self, tensors: Mapping[str, torch.Tensor], defense: str | None = None) -> ClientUpdate:
        """A copy with new tensors (and ``defense`` appended to ``defenses``)."""
        defenses = self.defenses + ((defense,) if defense else ())
        return replace(self, tensors=dict(tensors), defenses=defenses)

    def validate(self, model: torch.nn.Module) -> None:
        """Raise :class:`UpdateMismatchError` listing every way this update does not fit ``model``."""
        params = dict(model.named_parameters())
        problems = []
        missing = [n for n in params if n not in self.tensors]
        extra = [n for n in self.tensors if n not in params]
        if missing:
            problems.append(f"missing tensors for parameters {missing[:5]}")
        if extra:
            problems.append(f"tensors for unknown parameters {extra[:5]}")
        for name, tensor in self.tensors.items():
            if name in params and tuple(tensor.shape) != tuple(params[name].shape):
                problems.append(
                    f"{name} has shape {tuple(tensor.shape)}, model expects {tuple(params[name].shape)}"
                )
            elif not torch.isfinite(tensor).all():
                problems.append(f"{name} contains NaN or inf")
        if problems:
            raise UpdateMismatchError(
                "the update does not fit the model: " + "; ".join(problems)
                + " (check that the update was made with the same architecture and that it is finite)"
            )


@dataclass(frozen=True)
class GroundTruth:
    """The client's real batch: pixels in ``[0, 1]`` of shape ``(B, C, H, W)`` and labels ``(B,)``."""

    inputs: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.labels.shape[0]:
            raise ConfigError(
                f"ground truth has {self.inputs.shape[0]} inputs but {self.labels.shape[0]} labels"
            )


@dataclass(frozen=True)
class Reconstruction:
    """What an attack recovers.

    Args:
        inputs: reconstructed pixels in ``[0, 1]``, shape ``(B, C, H, W)``, in arbitrary order.
        labels: reconstructed labels ``(B,)``, or ``None`` if the attack does not recover them.
        loss_history: the objective per step (of the best restart).
        seconds: wall-clock time of the attack.
        info: free-form details (restored labels' method, best restart, ...).
    """

    inputs: torch.Tensor
    labels: torch.Tensor | None
    loss_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
