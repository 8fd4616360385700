"""Convolutions whose gradients build a lean graph for the double backward gradient matching takes.

Gradient matching differentiates a gradient: the first backward (``create_graph=True``) records
how each conv's input and weight gradients were computed, and the second one differentiates
that record with respect to the images. PyTorch records a conv's first backward as one
``convolution_backward`` node, and the double backward of that node computes the *weight's*
second-order term whenever the output gradient is involved, whether or not anything asks for it:
one batch-summed weight gradient and two transposed copies per conv per step, about a tenth of an
IG step on gradleak's convnet (measured in issue 15; see ``bench/bench_throughput.py``).

:class:`ConvGrads` gives a conv's output (already computed, passed in) a different backward:
the input gradient as ``conv_transpose2d`` of the output gradient with the weight held constant,
the weight gradient as ``convolution_backward`` asking for the weight alone, the bias gradient as
a sum. Each is differentiable in the images, and none takes a term nobody needs. The numbers
equal PyTorch's own to float rounding (``tests/inversion/test_lean_gradients.py``).

Only the per-sample pass of many rows (:mod:`~gradleak.inversion.per_sample`) uses it. On one row
(``TrialGradients.single``: the model itself on a few samples) the forward hooks and the Python
backward cost more than the skipped term saves — an IG step on the MNIST convnet at b=1 went from
1.83 to 2.22 ms when tried — so that path keeps PyTorch's graph.

Example:
    >>> import torch
    >>> conv = torch.nn.Conv2d(1, 2, 3, stride=2, padding=1)
    >>> x = torch.rand(2, 1, 7, 7, requires_grad=True)
    >>> out = lean_output(conv, x, conv(x))
    >>> (gx, gw) = torch.autograd.grad(out.square().sum(), [x, conv.weight])
    >>> out2 = conv(x)
    >>> rx, rw = torch.autograd.grad(out2.square().sum(), [x, conv.weight])
    >>> bool(torch.allclose(gx, rx, atol=1e-6) and torch.allclose(gw, rw, atol=1e-5))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvGrads(torch.autograd.Function):
    """A conv's output ``out`` (computed as usual, passed in detached) with a lean backward.

    Inputs: the conv's input ``a``, its ``weight`` and ``bias`` (so the output requires grad when
    the conv's would), ``out``, the module ``m``, and ``weight_grad``: whether to return the
    weight and bias gradients (callers that assemble per-row weight gradients themselves,
    :mod:`~gradleak.inversion.per_sample`, pass ``False``).
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,  # type: ignore[override]
                out: torch.Tensor, m: nn.Conv2d, weight_grad: bool) -> torch.Tensor:
        ctx.m, ctx.weight_grad, ctx.has_bias = m, weight_grad, bias is not None
        ctx.save_for_backward(a)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        (a,) = ctx.saved_tensors
        m = ctx.m
        w = m.weight.detach()
        gi = gw = gb = None
        if ctx.needs_input_grad[0]:
            pad = [a.shape[-2 + i] - ((grad.shape[-2 + i] - 1) * m.stride[i] - 2 * m.padding[i]
                                      + m.dilation[i] * (w.shape[-2 + i] - 1) + 1) for i in range(2)]
            gi = F.conv_transpose2d(grad, w, None, m.stride, m.padding, pad, m.groups, m.dilation)
        if ctx.weight_grad and ctx.needs_input_grad[1]:
            _, gw, _ = torch.ops.aten.convolution_backward(
                grad, a, w, None, list(m.stride), list(m.padding), list(m.dilation), False, [0, 0], m.groups,
                [False, True, False])
        if ctx.weight_grad and ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        return gi, gw, gb, None, None, None


def lean_output(m: nn.Conv2d, a: torch.Tensor, out: torch.Tensor, weight_grad: bool = True) -> torch.Tensor:
    """``out`` (= ``m(a)``) with :class:`ConvGrads`'s backward."""
    return ConvGrads.apply(a, m.weight, m.bias, out.detach(), m, weight_grad)
