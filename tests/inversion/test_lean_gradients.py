"""The lean double-backward pieces of the batched kit: ConvGrads and factored Linear gradients (issue 15)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from gradleak.inversion.conv_grad import lean_output
from gradleak.inversion.factored import Factored
from gradleak.inversion.gradients import TrialGradients
from gradleak.inversion.losses import GradientDistance
from gradleak.models import build_model

CONVS = [
    dict(in_channels=2, out_channels=4, kernel_size=3, stride=2, padding=1),
    dict(in_channels=2, out_channels=4, kernel_size=3, stride=1, padding=0, bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding=2, dilation=2, groups=2),
    dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
]


def _matching_grad(conv: nn.Conv2d, x: torch.Tensor, lean: bool) -> tuple[torch.Tensor, ...]:
    """The image gradient of ``‖∇_W loss‖² + ‖∇_x loss‖²``: a double backward through the conv."""
    x = x.clone().requires_grad_(True)
    out = lean_output(conv, x, conv(x)) if lean else conv(x)
    loss = (out.tanh() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
    firsts = torch.autograd.grad(loss, [x, *conv.parameters()], create_graph=True)
    (second,) = torch.autograd.grad(sum(f.square().sum() for f in firsts), [x])
    return (*firsts, second)


@pytest.mark.parametrize("options", CONVS)
def test_conv_grads_equal_pytorch_first_and_second_derivatives(options):
    torch.manual_seed(0)
    conv = nn.Conv2d(**options).double()
    x = torch.rand(3, conv.in_channels, 9, 8, dtype=torch.float64)
    lean, native = _matching_grad(conv, x, True), _matching_grad(conv, x, False)
    for a, b in zip(lean, native, strict=True):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-9)


class _CountConvs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if "convolution" in func.__name__:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def test_lean_double_backward_runs_fewer_convolutions():
    # PyTorch's double backward of its conv backward also computes the weight's second-order term
    # (a batch-summed weight gradient nothing asked for); ConvGrads' graph leaves it out
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
    x = torch.rand(4, 2, 8, 8)
    counts = []
    for lean in (False, True):
        xg = x.clone().requires_grad_(True)
        out = lean_output(conv, xg, conv(xg), weight_grad=False) if lean else conv(xg)
        (gx,) = torch.autograd.grad(out.square().sum(), [xg], create_graph=True)
        with _CountConvs() as mode:
            torch.autograd.grad(gx.square().sum(), [xg])
        counts.append(mode.calls)
    assert counts[1] < counts[0]


@pytest.mark.parametrize("samples", [1, 3])
def test_factored_inner_products_and_norms_equal_the_built_tensor(samples):
    gen = torch.Generator().manual_seed(samples)
    n, r, o, i = 3, 2, 5, 7
    f = Factored(torch.randn(n * r, samples, o, generator=gen), torch.randn(n * r, samples, i, generator=gen))
    target = torch.randn(n, o * i, generator=gen)
    dot, sq = f.dot_and_square(target)
    full = f.materialise().reshape(n, r, o * i)
    assert torch.allclose(dot, (full * target[:, None]).sum(-1).reshape(-1), atol=1e-4)
    assert torch.allclose(sq, full.square().sum(-1).reshape(-1), rtol=1e-5)
    both = f + f  # a layer called twice: the gradients add up
    assert torch.allclose(both.materialise(), 2 * f.materialise(), atol=1e-5)


@pytest.mark.parametrize("kind", ["cosine", "l2"])
@pytest.mark.parametrize("model_name", ["mlp", "convnet"])
def test_distance_of_factored_gradients_equals_distance_of_built_ones(kind, model_name):
    model = build_model(model_name, shape=(1, 8, 8), num_classes=10, seed=0).eval()
    gen = torch.Generator().manual_seed(1)
    n, r, b = 2, 3, 2
    targets = [[torch.randn(p.shape, generator=gen) for p in model.parameters()] for _ in range(n)]
    dist = GradientDistance(targets, kind)
    trial = TrialGradients(model)
    y = torch.randint(0, 10, (n * r, b), generator=gen)
    values, grads = [], []
    for factored in (True, False):
        x = torch.rand(n * r, b, 1, 8, 8, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        grad_list = trial(x, y, factored=factored)
        assert any(isinstance(g, Factored) for g in grad_list) == factored
        value = dist(grad_list)
        values.append(value)
        grads.append(torch.autograd.grad(value.sum(), [x])[0])
    assert torch.allclose(values[0], values[1], atol=1e-5, rtol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_a_transform_gets_built_gradients():
    model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0).eval()
    seen = []

    def transform(grads):
        seen.extend(type(g) for g in grads)
        return grads

    TrialGradients(model, transform)(torch.rand(2, 1, 1, 8, 8), torch.tensor([[1], [2]]), factored=True)
    assert seen and all(t is torch.Tensor for t in seen)
