"""A user's own architecture for `gradleak attack --model examples/user_model/model.py:build`.

Any function that returns an `nn.Module` works. gradleak passes the keywords it accepts among
`shape` ((C, H, W)), `num_classes` and `seed`, plus your `--model-option KEY=VALUE` values, and
builds the model under `torch.manual_seed(seed)`. The model receives pixels in [0, 1], so the
input normalisation is its first module.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallBNNet(nn.Module):
    """A ConvNet with BatchNorm: two conv-BN-ReLU blocks, global pooling, a linear head."""

    def __init__(self, channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.5), persistent=False)
        self.register_buffer("std", torch.tensor(0.5), persistent=False)
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - self.mean) / self.std))


def build(shape: tuple[int, int, int], num_classes: int, width: int = 16) -> nn.Module:
    """The factory gradleak calls: `--model examples/user_model/model.py:build [--model-option width=32]`."""
    return SmallBNNet(shape[0], num_classes, width)
