"""Residual networks with a CIFAR-style 3×3 stem (He, Zhang, Ren, Sun 2016; arXiv 1512.03385).

* ``resnet20``: the CIFAR ResNet of the paper's §4.2 — a 3×3 convolution, three stages of
  three basic blocks (widths 16, 32, 64), global average pooling, a linear head.
* ``resnet18``: the ImageNet ResNet-18 layout (stages of 2 blocks, widths 64–512) with the
  7×7/stride-2 stem and max-pool replaced by one 3×3/stride-1 convolution, as is usual on
  32×32 inputs (and as gradient-inversion papers attack it).

``norm`` picks BatchNorm (``bn``), GroupNorm (``gn``, up to 32 groups) or none (``none``;
the convolutions then get biases). Shortcuts that change shape are 1×1 convolutions with
normalisation (the paper's option B). Every model starts with ``Normalize``.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> model = build_model("resnet20", shape=(3, 32, 32), num_classes=10, seed=0, norm="gn")
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.models.layers import Normalize

NORMS = ("bn", "gn", "none")


def make_norm(norm: str, channels: int) -> nn.Module:
    """The normalisation layer ``norm`` for ``channels`` channels."""
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with normalisation and ReLU, plus the (projected) identity."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.bn1 = make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.bn2 = make_norm(norm, c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=bias),
                                          make_norm(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """``Normalize → 3×3 stem → stages of BasicBlocks → global average pool → Linear``.

    Args:
        shape: input ``(C, H, W)``.
        num_classes: outputs of the linear head.
        blocks: basic blocks per stage (the first stage has stride 1, the others 2).
        widths: channels per stage; the stem has ``widths[0]`` channels.
        norm: ``bn``, ``gn`` or ``none``.
        mean, std: the fixed input normalisation.
    """

    def __init__(self, shape: Sequence[int], num_classes: int, blocks: Sequence[int],
                 widths: Sequence[int], norm: str = "bn", mean: float | Sequence[float] = 0.5,
                 std: float | Sequence[float] = 0.5) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if len(blocks) != len(widths) or min(widths) < 1 or min(blocks) < 1:
            raise ConfigError(f"blocks {tuple(blocks)} and widths {tuple(widths)} must be positive and "
                              "of equal length")
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(shape[0], widths[0], 3, 1, 1, bias=norm == "none")
        self.bn1 = make_norm(norm, widths[0])
        self.relu = nn.ReLU()
        stages, c_in = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            layers = [BasicBlock(c_in, w, 1 if i == 0 else 2, norm)]
            layers += [BasicBlock(w, w, 1, norm) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = w
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(self.normalize(x))))
        return self.fc(self.flatten(self.pool(self.layers(x))))


def resnet20(shape: Sequence[int], num_classes: int, norm: str = "bn", width: int = 16,
             mean: float = 0.5, std: float = 0.5) -> nn.Module:
    """CIFAR ResNet-20 (He et al. 2016): 3×3 stem, 3×3 basic blocks of widths w, 2w, 4w (w=16)."""
    return ResNet(shape, num_classes, (3, 3, 3), (width, 2 * width, 4 * width), norm, mean, std)


def resnet18(shape: Sequence[int], num_classes: int, norm: str = "bn", width: int = 64,
             mean: float = 0.5, std: float = 0.5) -> nn.Module:
    """ResNet-18 with a CIFAR-style 3×3 stem: 4×2 basic blocks of widths w..8w (w=64), ~11M parameters."""
    return ResNet(shape, num_classes, (2, 2, 2, 2), (width, 2 * width, 4 * width, 8 * width), norm, mean, std)
