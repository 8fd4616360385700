"""The three kinds of data that never mix: what the server sees, the truth, the output.

* :class:`ClientUpdate` — what a client sends; the only thing an attack receives.
* :class:`GroundTruth` — the client's real data; only the experiment and metrics see it.
* :class:`Reconstruction` — what an attack returns, in pixel space ``[0, 1]``.

Example:
    >>> import torch
    >>> from gradleak.core.types import ClientUpdate
    >>> model = torch.nn.Linear(4, 2)
    >>> grads = {n: torch.randn_like(p) for n, p in model.named_parameters()}
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
from gradleak.core.limits import MAX_EPOCHS, MAX_STEPS
from gradleak.core.validate import (
    check_tensors,
    degenerate_problem,
    int_problem,
    labels_problem,
    real_problem,
    tensor_problem,
    values_problems,
)

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
        if lr_problem := real_problem("lr", self.lr, low=0, low_open=True):
            problems.append(lr_problem)
        if epochs_problem := int_problem("epochs", self.epochs, low=1, high=MAX_EPOCHS):
            problems.append(epochs_problem)
        if self.batch_size is not None and (bs_problem := int_problem("local batch_size", self.batch_size, low=1)):
            problems.append(bs_problem)
        if self.steps is not None and (steps_problem := int_problem("steps", self.steps, low=1, high=MAX_STEPS)):
            problems.append(steps_problem)
        problems += self._optimiser_problems()
        if problems:
            raise ConfigError("invalid local training: " + "; ".join(problems))

    def _optimiser_problems(self) -> list[str]:
        """What is wrong with the optimiser fields (the fields after ``steps``)."""
        problems = []
        betas = self.betas
        if (isinstance(betas, (tuple, list)) and len(betas) == 2
                and not any(real_problem("beta", b, low=0, high=1) for b in betas) and all(b < 1 for b in betas)):
            object.__setattr__(self, "betas", tuple(float(b) for b in betas))  # a JSON list reads back as a tuple
        else:
            problems.append(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not isinstance(self.optimizer, str) or self.optimizer not in ("sgd", "adam", "adamw"):
            problems.append(f"optimizer must be 'sgd', 'adam' or 'adamw', got {self.optimizer!r}")
        if real_problem("momentum", self.momentum, low=0, high=1) or self.momentum >= 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum!r}")
        elif self.momentum and self.optimizer != "sgd":
            problems.append(f"momentum applies to optimizer 'sgd' ({self.optimizer} uses betas)")
        if not isinstance(self.nesterov, bool):
            problems.append(f"nesterov must be true or false, got {self.nesterov!r}")
        elif self.nesterov and (self.optimizer != "sgd" or not self.momentum):
            problems.append("nesterov needs optimizer 'sgd' with momentum > 0")
        for name in ("weight_decay", "prox_mu"):
            if problem := real_problem(name, getattr(self, name), low=0):
                problems.append(problem)
        if problem := real_problem("eps", self.eps, low=0, low_open=True):
            problems.append(problem)
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
        if problem := int_problem("num_examples", self.num_examples, low=1):
            raise ConfigError(problem + " (the client's number of training examples)")
        object.__setattr__(self, "num_examples", int(self.num_examples))
        if self.local_training is not None and not isinstance(self.local_training, LocalTraining):
            raise ConfigError(f"local_training must be a LocalTraining, got {type(self.local_training).__name__}")
        if self.kind == "weight_delta" and self.local_training is None:
            raise ConfigError(
                "a weight_delta update needs local_training, the learning rate, epochs and local batch size "
                "the server chose: LocalTraining(...) in Python, --local-lr/--local-epochs/"
                "--local-batch-size on the command line"
            )
        object.__setattr__(self, "tensors", check_tensors(self.tensors, "update"))
        if self.labels is not None and (problem := labels_problem(self.labels, self.num_examples, "update labels")):
            raise ConfigError(problem)
        if self.buffers is not None:
            if not isinstance(self.buffers, Mapping) or not all(
                    isinstance(v, torch.Tensor) for v in self.buffers.values()):
                raise ConfigError("buffers must map buffer names to torch tensors")
        if not isinstance(self.defenses, tuple) or not all(isinstance(d, str) for d in self.defenses):
            raise ConfigError(f"defenses must be a tuple of defense specs (text), got {self.defenses!r}")

    @classmethod
    def from_gradients(
        cls, gradients: Mapping[str, torch.Tensor], num_examples: int, **kwargs: Any
    ) -> ClientUpdate:
        """An FedSGD update from gradients keyed by parameter name."""
        tensors = {k: v.detach().clone() for k, v in check_tensors(gradients, "gradient").items()}
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
        before, after = check_tensors(before, "before-weights"), check_tensors(after, "after-weights")
        missing = sorted(set(before) ^ set(after))
        if missing:
            raise UpdateMismatchError(f"before/after weights differ in names: {missing[:5]}")
        shapes = [f"{k}: {tuple(before[k].shape)} before vs {tuple(after[k].shape)} after" for k in before
                  if before[k].shape != after[k].shape]
        if shapes:
            raise UpdateMismatchError("before/after weights differ in shape (" + "; ".join(shapes[:5])
                                      + "); pass the weights the server sent and the same parameters returned")
        delta = {k: (after[k].detach() - before[k].detach()).clone() for k in before}
        return cls("weight_delta", delta, num_examples, local_training, **kwargs)

    def with_tensors(self, tensors: Mapping[str, torch.Tensor], defense: str | None = None) -> ClientUpdate:
        """A copy with new tensors (and ``defense`` appended to ``defenses``)."""
        defenses = self.defenses + ((defense,) if defense else ())
        return replace(self, tensors=dict(tensors), defenses=defenses)

    def validate(self, model: torch.nn.Module) -> None:
        """Raise :class:`UpdateMismatchError` listing every way this update does not fit ``model``
        (names, shapes), then every way it cannot be attacked (NaN or inf, absurd magnitudes, every
        value zero or equal)."""
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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
        fits = not problems
        problems += values_problems(self.tensors)
        degenerate = None if len(problems) or not fits else degenerate_problem(self.tensors)
        if problems or degenerate:
            raise UpdateMismatchError(
                ("the update does not fit the model: " if not fits else "the update cannot be attacked: ")
                + "; ".join(problems + [degenerate] * bool(degenerate))
                + (" (check that the update was made with the same architecture)" if not fits else
                   " (check how the update was computed and saved: it must be finite and carry signal)")
            )


@dataclass(frozen=True)
class GroundTruth:
    """The client's real batch: pixels in ``[0, 1]`` of shape ``(B, C, H, W)`` and labels ``(B,)``."""

    inputs: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        problem = tensor_problem("inputs", self.inputs, what="ground truth")
        if problem is None and self.inputs.dim() != 4:
            problem = f"ground truth inputs must be (B, C, H, W), got shape {tuple(self.inputs.shape)}"
        problem = problem or labels_problem(self.labels, int(self.inputs.shape[0]), "ground truth labels")
        if problem:
            raise ConfigError(problem)


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
