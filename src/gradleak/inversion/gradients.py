"""Observed gradients from an update, and batched trial gradients for restarts.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> x, y = torch.rand(1, 1, 8, 8), torch.tensor([3])
    >>> target = observed_gradient(model, fedsgd_update(model, x, y))
    >>> trial = trial_gradients(model, x[None], y[None])   # (R=1, B=1, ...)
    >>> bool(torch.allclose(trial[0][0], target[0], atol=1e-6))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from gradleak.core.errors import NotApplicableError
from gradleak.core.types import ClientUpdate, GradList, TrialTransform
from gradleak.inversion.factored import Factored
from gradleak.inversion.per_sample import PerSampleGradients
from gradleak.inversion.unroll import effective_steps
from gradleak.models.layers import has_batchnorm


def observed_gradient(model: nn.Module, update: ClientUpdate) -> GradList:
    """The gradient an attack matches, in ``model.named_parameters()`` order.

    FedSGD gradients are returned as they are. A FedAvg weight delta becomes the average
    gradient (:func:`average_gradient`) — exact for one local step, an approximation for
    several (attacks that unroll local training use the delta directly).

    Raises:
        NotApplicableError: the clients train with Adam/AdamW, whose delta is no gradient.
    """
    update.validate(model)
    problems = delta_problems(update)
    if problems:
        raise NotApplicableError("reading the update as a gradient", problems)
    return [average_gradient(update, n, p) for n, p in model.named_parameters()]


def delta_scale(update: ClientUpdate) -> float:
    """``-1 / (lr · T_eff)``: the factor that turns a FedAvg weight delta into the average gradient.

    ``T_eff`` is the number of local steps, grown by momentum
    (:func:`~gradleak.inversion.unroll.effective_steps`).
    """
    local = update.local_training
    assert local is not None  # guaranteed by ClientUpdate for a weight delta
    return -1.0 / (local.lr * effective_steps(local, update.num_examples))


def average_gradient(update: ClientUpdate, name: str, start: torch.Tensor,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The client's average gradient of parameter ``name`` (whose sent value is ``start``), in ``dtype``.

    For SGD clients ``g = Δ · delta_scale − weight_decay · W₀``. What is exact and what is not:

    * one local step of SGD, with or without momentum, Nesterov, weight decay or FedProx's
      term (which is zero at the first step): exact;
    * several steps: the mean of the step gradients if they did not change along the way;
      weight decay is taken at ``W₀`` (not at the moving weights) and FedProx's pull back to
      ``W₀`` is ignored — all three errors shrink with ``lr · T``;
    * Adam/AdamW: no conversion exists (see :func:`delta_problems`).

    Example:
        >>> import torch
        >>> from gradleak.core.types import LocalTraining
        >>> d = ClientUpdate("weight_delta", {"w": torch.tensor([-0.3])}, 1, LocalTraining(lr=0.1, weight_decay=1.0))
        >>> average_gradient(d, "w", torch.tensor([1.0])).tolist()   # -(-0.3)/0.1 - 1.0 * 1.0
        [2.0]
    """
    tensor = update.tensors[name].detach().to(dtype)
    if update.kind == "gradients":
        return tensor
    local = update.local_training
    assert local is not None
    g = tensor * delta_scale(update)
    if local.weight_decay:
        g = g - local.weight_decay * start.detach().to(dtype)
    return g


def delta_problems(update: ClientUpdate) -> list[str]:
    """Why a weight delta cannot be read as an average gradient (empty when it can).

    Adam divides each entry by the root of its second moment, so after one step the delta is
    ``−lr · g/(|g| + eps)``: the signs of the gradient, its magnitudes gone.
    """
    local = update.local_training
    if update.kind != "weight_delta" or local is None or local.optimizer == "sgd":
        return []
    return [f"the clients train with {local.optimizer}, whose weight delta keeps only the sign of each gradient "
            "entry and cannot be read as a gradient; use fedavg-unrolled, which simulates "
            f"{local.optimizer} (with labels that leak or are known)"]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for hard labels ``(B,)`` or label distributions ``(B, K)``."""
    if target.dtype in (torch.int64, torch.int32):
        return F.cross_entropy(logits, target)
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def trial_gradients(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, transform: TrialTransform | None = None
) -> GradList:
    """Gradients of the client loss for R restarts at once, differentiable in ``x``.

    Args:
        model: the attacked model (its parameters are treated as constants).
        x: trial inputs ``(R, B, C, H, W)``.
        y: labels ``(R, B)`` (int) or label distributions ``(R, B, K)``.
        transform: the adaptive attacker's copy of a defense's deterministic part, applied
            to each restart's gradient list (leading dim R).

    Returns:
        one tensor per parameter, each with a leading restart dimension ``R``. A one-off call;
        a loop builds :class:`TrialGradients` once instead.
    """
    return TrialGradients(model, transform)(x, y)


class TrialGradients:
    """Per-row client-loss gradients ``(K, ...)`` for trial rows ``x (K, B, C, H, W)``, differentiable in ``x``.

    Built once per attack run: the parameter list, the buffers and the choice of method are fixed
    here, not rebuilt every step. Rows are independent (restarts, and in ``run_many`` the clients
    of a round): one row runs the model itself (the fastest graph); several rows run as one
    ordinary batched pass with per-row gradients assembled from each layer's inputs and output
    gradients (:mod:`~gradleak.inversion.per_sample`; Linear, Conv2d, eval-mode BatchNorm,
    GroupNorm), or, for other layers, as one vectorised graph with one copy of the parameters per
    row (``copies``: grouped convolutions / batched matmuls, one ``autograd.grad``); a model with
    BatchNorm in train mode (whose batch statistics must not mix rows) loops over rows. Gradients
    are taken with ``torch.autograd.grad``: nothing fills the parameters' ``.grad``.

    Args:
        model: the attacked model (never modified).
        transform: the adaptive attacker's copy of a defense, applied to the ``(K, ...)`` list.
    """

    def __init__(self, model: nn.Module, transform: TrialTransform | None = None) -> None:
        self.model, self.transform = model, transform
        named = list(model.named_parameters())
        self.names = [n for n, _ in named]
        self.frozen = {n: p.detach() for n, p in named}
        own = [p for _, p in named]
        # the model's own leaves when they require grad (no re-binding), else detached leaves
        self.leaves = own if all(p.requires_grad for p in own) else [
            p.detach().requires_grad_(True) for p in own]
        self.rebind = self.leaves is not own
        self.buffers = dict(model.named_buffers())
        self.loop = model.training and has_batchnorm(model)
        self.fast = None if self.loop else PerSampleGradients.build(model)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool = True,
                 factored: bool = False) -> list[torch.Tensor | Factored]:
        """Every row's gradient list. ``factored``: where the rows run as one per-sample pass and no
        transform applies, Linear weights come as :class:`~gradleak.inversion.factored.Factored`
        (for :class:`~gradleak.inversion.losses.GradientDistance`, which reads them without building them)."""
        if x.shape[0] == 1:
            out = [g.unsqueeze(0) for g in self.single(x[0], y[0], create_graph)]
        elif self.loop:
            rows = [self.single(xi, yi, create_graph) for xi, yi in zip(x, y)]
            out = [torch.stack(gs) for gs in zip(*rows)]
        elif factored and self.fast is not None and self.transform is None:
            return self.fast(x, y, create_graph, factored=True)
        else:
            out = self.rows(x, y, create_graph)
        return self.transform(out) if self.transform is not None else out  # type: ignore[return-value]

    def single(self, x: torch.Tensor, y: torch.Tensor, create_graph: bool = True) -> GradList:
        """The gradient list of one row ``x (B, C, H, W)``."""
        with torch.enable_grad():
            if self.rebind:
                logits = functional_call(self.model, dict(zip(self.names, self.leaves)), (x,))
            else:
                logits = self.model(x)
            loss = soft_cross_entropy(logits, y)
            return list(torch.autograd.grad(loss, self.leaves, create_graph=create_graph))

    def rows(self, x: torch.Tensor, y: torch.Tensor, create_graph: bool = True) -> GradList:
        """Every row's gradient in one batched graph (per-sample identities where the layers allow)."""
        if self.fast is not None:
            return self.fast(x, y, create_graph)  # type: ignore[return-value]
        return self.copies(x, y, create_graph)

    def copies(self, x: torch.Tensor, y: torch.Tensor, create_graph: bool = True) -> GradList:
        """Every row's gradient in one vectorised graph (one parameter copy per row)."""
        k = x.shape[0]
        with torch.enable_grad():
            copies = {n: t.expand(k, *t.shape).requires_grad_(True) for n, t in self.frozen.items()}

            def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
                return soft_cross_entropy(functional_call(self.model, (p, self.buffers), (xi,)), yi)

            losses = vmap(one)(copies, x, y)
            return list(torch.autograd.grad(losses.sum(), list(copies.values()), create_graph=create_graph))
