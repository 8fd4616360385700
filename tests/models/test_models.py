"""ResNet-18/20 with a CIFAR-style stem and bn / gn / none normalisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.fl import fedsgd_update
from gradleak.inversion.gradients import observed_gradient, trial_gradients
from gradleak.models import Normalize, build_model, has_batchnorm, last_linear
from gradleak.models.resnet import ResNet


@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_resnet20_shapes_norms_and_seed(norm):
    model = build_model("resnet20", shape=(3, 32, 32), num_classes=10, seed=1, norm=norm)
    assert isinstance(next(model.children()), Normalize)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert has_batchnorm(model) == (norm == "bn")
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules()) == (norm == "gn")
    assert (model.conv1.bias is not None) == (norm == "none")
    assert last_linear(model)[0] == "fc"
    # resnet20: 19 3x3 convolutions + 2 projection shortcuts
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(c.kernel_size == (3, 3) for c in convs) == 19 and len(convs) == 21
    again = build_model("resnet20", shape=(3, 32, 32), num_classes=10, seed=1, norm=norm)
    other = build_model("resnet20", shape=(3, 32, 32), num_classes=10, seed=2, norm=norm)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))
    assert not torch.equal(model.conv1.weight, other.conv1.weight)


def test_resnet18_layout_and_small_inputs():
    model = build_model("resnet18", shape=(3, 32, 32), num_classes=10, seed=0)
    n = sum(p.numel() for p in model.parameters())
    assert 11_100_000 < n < 11_200_000  # ResNet-18 with a 10-class head
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    small = build_model("resnet18", shape=(1, 8, 8), num_classes=2, seed=0, width=4, norm="gn")
    assert small(torch.rand(3, 1, 8, 8)).shape == (3, 2)


def test_resnet_bad_options():
    with pytest.raises(ConfigError, match="norm"):
        build_model("resnet20", shape=(3, 32, 32), num_classes=10, seed=0, norm="ln")
    with pytest.raises(ConfigError, match="option"):
        build_model("resnet20", shape=(3, 32, 32), num_classes=10, seed=0, depth=56)
    with pytest.raises(ConfigError, match="equal length"):
        ResNet((3, 8, 8), 10, blocks=(1, 1), widths=(4,))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_attack_machinery_reproduces_the_client_gradient_on_resnet20(mode):
    # BN in eval mode (vectorised restarts) and train mode (the loop fallback)
    model = build_model("resnet20", shape=(3, 8, 8), num_classes=10, seed=0, width=2)
    model.train(mode == "train")
    x, y = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 7])
    target = observed_gradient(model, fedsgd_update(model, x, y, mode=mode))
    trial = trial_gradients(model, torch.stack([x, torch.rand_like(x)]), torch.stack([y, y]))
    for t, g in zip(target, trial, strict=True):
        assert torch.allclose(g[0], t, atol=1e-5)
    assert any(not torch.allclose(g[1], t, atol=1e-3) for t, g in zip(target, trial, strict=True))


def test_share_buffers_sends_bn_statistics():
    model = build_model("resnet20", shape=(3, 8, 8), num_classes=10, seed=0, width=4)
    update = fedsgd_update(model, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), mode="train",
                           share_buffers=True)
    assert update.buffers is not None and "bn1.running_mean" in update.buffers
    assert not torch.equal(update.buffers["bn1.running_mean"], torch.zeros(4))


@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_resnet_gradcheck_float64(norm):
    model = ResNet((2, 4, 4), 3, blocks=(1, 1), widths=(2, 4), norm=norm).double().eval()
    x = torch.rand(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: model(inp), (x,), eps=1e-6, atol=1e-5, fast_mode=True)
