"""Per-row parameter gradients from one ordinary batched pass (Linear, Conv2d, BatchNorm in eval, GroupNorm).

Gradient matching needs, for each of K independent rows (restarts, clients), the gradient of that
row's loss with respect to the *shared* parameters, differentiably in the inputs. The generic way
(:meth:`~gradleak.inversion.gradients.TrialGradients.rows`) gives every row its own copy of the
parameters, which PyTorch runs as grouped convolutions — and whose double backward loops over the
groups. Here the model runs once on all ``K·B`` samples with its own weights; forward hooks keep
each layer's input ``a`` and output, one ``autograd.grad`` of the summed loss gives every output's
gradient ``δ`` (with ``create_graph``), and each row's parameter gradient is assembled from ``a``
and ``δ`` with batched matrix products (the per-sample-gradient identities behind Opacus):

* Linear: ``∂W = Σ_b δ_b a_bᵀ``, ``∂b = Σ_b δ_b``;
* Conv2d (``groups=1``): the weight gradient of one convolution with a group per row (the rows'
  channels stacked), which sums ``δ ⊗ patches(a)`` without building the patch matrix;
* BatchNorm in eval mode and GroupNorm: ``∂γ = Σ δ ⊙ x̂``, ``∂β = Σ δ`` per channel.

Every operation is an ordinary autograd op, so the result is differentiable in the inputs, and it
equals the parameter-copy method to float tolerance (``tests/inversion``); a layer called twice
adds up its calls. Two choices keep the double backward lean (issue 15): each conv's output
gradient flows back to its input through :class:`~gradleak.inversion.conv_grad.ConvGrads` (whose
graph skips a weight term PyTorch's own conv double backward computes for nothing), and with
``factored=True`` a Linear weight's per-row gradients come as their
:class:`~gradleak.inversion.factored.Factored` factors, which
:class:`~gradleak.inversion.losses.GradientDistance` reads without building them.
Models with any other parameter owner or BatchNorm in train mode (or without
running statistics) fall back to the generic method.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.inversion.gradients import TrialGradients
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> x, y = torch.rand(3, 2, 1, 8, 8), torch.randint(0, 10, (3, 2))
    >>> fast = PerSampleGradients.build(model)(x, y)
    >>> all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fast, TrialGradients(model).copies(x, y)))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gradleak.inversion.conv_grad import lean_output
from gradleak.inversion.factored import Factored

_BN = nn.modules.batchnorm._BatchNorm
SUPPORTED = (nn.Linear, nn.Conv2d, _BN, nn.GroupNorm)


class PerSampleGradients:
    """Per-row gradients ``(K, ...)`` of the mean client loss, from one batched pass of the model.

    Build with :meth:`build`, which returns ``None`` for a model this method does not cover.
    """

    def __init__(self, model: nn.Module, layers: list[nn.Module]) -> None:
        self.model, self.layers = model, layers
        self.order = [id(p) for p in model.parameters()]
        # an in-place op later in the model (ReLU(inplace=True)) would overwrite a kept output: copy them
        self.copy = any(getattr(m, "inplace", False) for m in model.modules())
        self.stacked: dict[tuple[int, int], torch.Tensor] = {}  # per (conv, rows): its k-group weight

    @classmethod
    def build(cls, model: nn.Module) -> PerSampleGradients | None:
        """The method for ``model``, or ``None`` (another parameter owner, a shared or unsupported layer)."""
        owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
        params = {id(p) for p in model.parameters()}
        owned = {id(p) for m in owners for p in m.parameters(recurse=False)}
        for m in owners:
            if not isinstance(m, SUPPORTED) or (isinstance(m, _BN) and (
                    m.training or not m.affine or m.running_mean is None or m.running_var is None)):
                return None
            if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str)):
                return None
        if owned != params or len(owned) != sum(1 for _ in model.parameters()):
            return None
        return cls(model, owners)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, create_graph: bool = True,
                 factored: bool = False) -> list[torch.Tensor | Factored]:
        """Every row's gradient list; ``factored``: each Linear weight's as its :class:`Factored` factors."""
        k, b = x.shape[:2]
        seen: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

        def keep(m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor | None:
            if isinstance(m, nn.Conv2d):  # the same values, a leaner graph back to the input
                out = lean_output(m, args[0], out, weight_grad=False)
            seen.append((m, args[0], out))
            return out.clone() if self.copy else out

        hooks = [m.register_forward_hook(keep) for m in self.layers]
        with torch.enable_grad():
            try:
                logits = self.model(x.reshape(k * b, *x.shape[2:]))
            finally:
                for h in hooks:
                    h.remove()
            loss = _summed_loss(logits, y.reshape(k * b, *y.shape[2:])) / b
            deltas = torch.autograd.grad(loss, [out for _, _, out in seen], create_graph=create_graph)
            grads: dict[int, torch.Tensor | Factored] = {}
            for (m, a, _), d in zip(seen, deltas, strict=True):
                for p, g in zip(m.parameters(recurse=False), _layer_grads(m, a, d, k, self._stacked(m, k), factored),
                                strict=True):
                    grads[id(p)] = grads[id(p)] + g if id(p) in grads else g
        return [g if isinstance(g := grads[i], Factored) else g.reshape(k, *p.shape)
                for i, p in zip(self.order, self.model.parameters(), strict=True)]

    def _stacked(self, m: nn.Module, k: int) -> torch.Tensor | None:
        """A conv's weight repeated for ``k`` groups, built once per row count (only its shape,
        dtype and device matter to the weight gradient, so it never goes stale)."""
        if not isinstance(m, nn.Conv2d):
            return None
        key = (id(m), k)
        if key not in self.stacked:
            self.stacked[key] = m.weight.detach().repeat(k, 1, 1, 1)
        return self.stacked[key]


def _summed_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.dtype in (torch.int64, torch.int32):
        return F.cross_entropy(logits, target, reduction="sum")
    return -(target * F.log_softmax(logits, dim=-1)).sum()


def _layer_grads(m: nn.Module, a: torch.Tensor, d: torch.Tensor, k: int, stacked: torch.Tensor | None,
                 factored: bool = False) -> list[torch.Tensor | Factored]:
    """Per-row gradients of ``m``'s own parameters (in ``m.parameters(recurse=False)`` order);
    ``stacked``: a conv's weight repeated for ``k`` groups (:meth:`PerSampleGradients._stacked`);
    ``factored``: a Linear weight's as its factors."""
    if isinstance(m, nn.Linear):
        a_r, d_r = a.reshape(k, -1, a.shape[-1]), d.reshape(k, -1, d.shape[-1])
        weight = Factored(d_r, a_r)
        out: list[torch.Tensor | Factored] = [weight if factored else weight.materialise()]
        return out + ([d_r.sum(1)] if m.bias is not None else [])
    if isinstance(m, nn.Conv2d):
        assert stacked is not None
        return _conv_grads(m, a, d, k, stacked)
    if isinstance(m, _BN):
        shape = (1, -1) + (1,) * (a.dim() - 2)
        normed = (a - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
    else:  # GroupNorm
        normed = F.group_norm(a, m.num_groups, eps=m.eps)
    c = d.shape[1]
    dg = (d * normed).reshape(k, -1, c, *d.shape[2:]).transpose(1, 2).reshape(k, c, -1).sum(2)
    db = d.reshape(k, -1, c, *d.shape[2:]).transpose(1, 2).reshape(k, c, -1).sum(2)
    return [dg, db]


def _conv_grads(m: nn.Conv2d, a: torch.Tensor, d: torch.Tensor, k: int,
                weight: torch.Tensor) -> list[torch.Tensor]:
    """Per-row ``∂W``, ``∂b`` of a ``groups=1`` convolution as the weight gradient of a ``k``-group one.

    The rows' channels are stacked (``(per, k·Cin, H, W)``, ``(per, k·Cout, H', W')``), so one
    grouped ``convolution_backward`` gives every row's weight gradient, summed over its own
    ``per`` samples; its derivative is again a pair of (grouped) convolutions. This replaced
    ``F.unfold`` + ``bmm`` (issue 15): the same numbers, with no patch matrix built or scattered back.
    ``weight`` is ``m.weight`` repeated for the ``k`` groups, ``(k·Cout, Cin, kh, kw)``.
    """
    per = a.shape[0] // k
    if per > 1:  # (k·per, C, ...) → (per, k·C, ...): row-major samples become per-row channel blocks
        a = a.reshape(k, per, *a.shape[1:]).transpose(0, 1)
        d = d.reshape(k, per, *d.shape[1:]).transpose(0, 1)
    a = a.reshape(per, k * m.in_channels, *a.shape[-2:])
    d = d.reshape(per, k * m.out_channels, *d.shape[-2:])
    _, dw, _ = torch.ops.aten.convolution_backward(
        d, a, weight, None, list(m.stride), list(m.padding), list(m.dilation), False, [0, 0], k,
        [False, True, False])
    out = [dw.view(k, *m.weight.shape)]
    if m.bias is not None:
        out.append(d.reshape(per, k, m.out_channels, -1).sum((0, 3)))
    return out

