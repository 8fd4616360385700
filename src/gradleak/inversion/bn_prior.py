"""Image priors of GradInversion (Yin et al., CVPR 2021, arXiv 2104.07586): BN statistics, group consistency.

* :class:`BNStatisticsPrior` — ``Σ_l ‖μ_l(x̂) − μ_l‖₂ + ‖σ²_l(x̂) − σ²_l‖₂`` over the BatchNorm layers,
  matching the batch statistics of the trial images at each BN input to target statistics:
  the client's own batch statistics when the update shares BN buffers after one train-mode
  pass (they are exactly recoverable from the running averages), else the running statistics
  the update or the model carries. Running statistics still at their initial values (mean 0,
  variance 1: an untrained model) say nothing about data, and the prior switches itself off.
* :class:`GroupConsistency` — ``Σ_g ‖x̂_g − E‖²`` pulling several seeds (restarts) optimised
  together toward their mean ``E``, after registering every seed's batch to the first one's
  (here registration = the Hungarian permutation of the batch; the paper also aligns pixels).

Example:
    >>> import torch
    >>> group = GroupConsistency(start=0, every=1)
    >>> x = torch.stack([torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)])
    >>> group(x).tolist()
    [0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.func import functional_call

from gradleak.core.types import ClientUpdate

_BN = nn.modules.batchnorm._BatchNorm


def bn_layers(model: nn.Module) -> list[tuple[str, _BN]]:
    """The model's BatchNorm layers with their names, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _BN)]


def bn_targets(model: nn.Module,
               update: ClientUpdate | None = None) -> tuple[list[tuple[torch.Tensor, ...]], str]:
    """Target ``(mean, var)`` per BN layer and where they come from (``""`` when uninformative)."""
    layers = bn_layers(model)
    buffers = dict(update.buffers) if update is not None and update.buffers else {}
    targets = []
    source = "model running statistics"
    for name, bn in layers:
        mean, var = bn.running_mean, bn.running_var
        if mean is None or var is None:
            return [], ""
        key_m, key_v = f"{name}.running_mean", f"{name}.running_var"
        if key_m in buffers and key_v in buffers:
            new_m, new_v = buffers[key_m].float(), buffers[key_v].float()
            if update is not None and update.kind == "gradients" and bn.momentum:
                mom = float(bn.momentum)
                new_m = (new_m - (1 - mom) * mean) / mom   # the client's batch mean
                new_v = (new_v - (1 - mom) * var) / mom    # its unbiased batch variance
                source = "client batch statistics (from shared BN buffers)"
            else:
                source = "shared BN buffers"
            mean, var = new_m, new_v
        targets.append((mean.detach().float(), var.detach().float()))
    if source == "model running statistics" and all(
            bool((m == 0).all() and (v == 1).all()) for m, v in targets):
        return [], ""
    return targets, source


class BNStatisticsPrior:
    """GradInversion's BN-statistics loss per restart.

    Args:
        model: the attacked model (its buffers are never modified).
        update: the client update (shared BN buffers give the client's batch statistics), or
            several clients' updates whose rows are stacked client by client (``run_many``).
        first_layer_weight: multiplier of the first BN layer's term (GradInversion-style).

    ``active`` is false when the model has no BN or only uninformative statistics (for any client).
    """

    def __init__(self, model: nn.Module, update: ClientUpdate | Sequence[ClientUpdate] | None = None,
                 first_layer_weight: float = 1.0) -> None:
        updates = list(update) if isinstance(update, Sequence) else [update]
        self.model = model
        self.layers = bn_layers(model)
        found = [bn_targets(model, u) for u in updates]
        self.source = found[0][1]
        self.active = all(t for t, _ in found)
        # per layer: (N, C) target means and variances, one row per client
        self.targets = [tuple(torch.stack([t[j][i] for t, _ in found]) for i in range(2))
                        for j in range(len(self.layers))] if self.active else []
        self.params = {n: p.detach() for n, p in model.named_parameters()}
        self.first_layer_weight = first_layer_weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(R,)`` losses for trial images ``x`` of shape ``(R, B, C, H, W)`` (rows grouped by client)."""
        if not self.active:
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        r, b = x.shape[:2]
        captured: list[torch.Tensor] = []
        hooks = [m.register_forward_pre_hook(lambda _m, a: captured.append(a[0])) for _, m in self.layers]
        try:
            if self.model.training:   # batch statistics mix restarts: one pass each, on copies of the buffers
                buffers = {n: t.detach().clone() for n, t in self.model.named_buffers()}
                for i in range(r):
                    functional_call(self.model, (self.params, buffers), (x[i],))
                feats = [torch.stack(captured[j::len(self.layers)]) for j in range(len(self.layers))]
            else:
                buffers = dict(self.model.named_buffers())
                functional_call(self.model, (self.params, buffers), (x.reshape(r * b, *x.shape[2:]),))
                feats = [f.reshape(r, b, *f.shape[1:]) for f in captured]
        finally:
            for h in hooks:
                h.remove()
        total = torch.zeros(r, dtype=x.dtype, device=x.device)
        for j, (f, (mean, var)) in enumerate(zip(feats, self.targets, strict=True)):
            dims = (1, *range(3, f.dim()))
            mu = f.mean(dim=dims).view(mean.shape[0], -1, mean.shape[1])
            v = f.var(dim=dims, unbiased=True).view(mean.shape[0], -1, mean.shape[1])
            term = ((mu - mean[:, None]).norm(dim=2) + (v - var[:, None]).norm(dim=2)).reshape(r)
            total = total + (self.first_layer_weight if j == 0 else 1.0) * term
        return total


def registration_perms(x: torch.Tensor) -> list[torch.Tensor]:
    """Per restart, the batch order that best matches restart 0's (Hungarian on pixel distance)."""
    flat = x.detach().reshape(x.shape[0], x.shape[1], -1).double().cpu()
    perms = [torch.arange(x.shape[1])]
    for i in range(1, x.shape[0]):
        rows, cols = linear_sum_assignment(torch.cdist(flat[0], flat[i]).numpy())
        perms.append(torch.as_tensor(cols[np.argsort(rows)]))
    return [p.to(x.device) for p in perms]


def register_batches(x: torch.Tensor) -> torch.Tensor:
    """Permute every restart's batch ``(R, B, ...)`` to best match restart 0's.

    Example:
        >>> a = torch.arange(2.0).reshape(2, 1, 1, 1)
        >>> register_batches(torch.stack([a, a.flip(0)]))[1].flatten().tolist()
        [0.0, 1.0]
    """
    return torch.stack([x[i][p] for i, p in enumerate(registration_perms(x))])


class GroupConsistency:
    """Lazy group-consistency term: ``‖x_r − E‖²`` (mean over pixels, summed over the batch).

    Args:
        start: the first call at which the term is active (before it, zero).
        every: refresh the registered mean ``E`` every this many calls.
    """

    def __init__(self, start: int = 0, every: int = 100) -> None:
        self.start, self.every = start, max(1, every)
        self.calls = 0
        self.mean: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(R,)`` distances of every restart (registered to restart 0) from the group mean."""
        step = self.calls
        self.calls += 1
        if step < self.start or x.shape[0] < 2:
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        perms = registration_perms(x.detach())
        if self.mean is None or (step - self.start) % self.every == 0:
            self.mean = torch.stack([x[i].detach()[p] for i, p in enumerate(perms)]).mean(0)
        # gradients flow through x; registration only chooses the order of its batch entries
        return torch.stack([((x[i][p] - self.mean) ** 2).mean(dim=(1, 2, 3)).sum()
                            for i, p in enumerate(perms)])
