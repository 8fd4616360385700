"""The built-in models: plain ``nn.Module``s built from name + seed + input shape + classes.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> model = build_model("lenet", shape=(1, 28, 28), num_classes=10, seed=0)
    >>> model(torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from gradleak.models.layers import Normalize

Shape = Sequence[int]


def mlp(shape: Shape, num_classes: int, widths: Sequence[int] | int = (200, 200),
        mean: float = 0.5, std: float = 0.5) -> nn.Module:
    """A ReLU multi-layer perceptron: ``Normalize → Flatten → (Linear → ReLU)* → Linear``.

    ``widths`` lists the hidden widths; a single number means one hidden layer.
    """
    if isinstance(widths, int):
        widths = (widths,)
    layers: list[nn.Module] = [Normalize(mean, std), nn.Flatten()]
    fan_in = math.prod(shape)
    for w in widths:
        layers += [nn.Linear(fan_in, int(w)), nn.ReLU()]
        fan_in = int(w)
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def lenet(shape: Shape, num_classes: int, mean: float = 0.5, std: float = 0.5) -> nn.Module:
    """The sigmoid LeNet of DLG (Zhu et al. 2019), weights and biases drawn from U(-0.5, 0.5)."""
    c, h, w = shape
    size = (((h + 1) // 2 + 1) // 2, ((w + 1) // 2 + 1) // 2)
    model = nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(c, 12, 5, padding=2, stride=2), nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, padding=2, stride=2), nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, padding=2, stride=1), nn.Sigmoid(),
        nn.Flatten(),
        nn.Linear(12 * size[0] * size[1], num_classes),
    )
    for p in model.parameters():
        nn.init.uniform_(p, -0.5, 0.5)
    return model


def convnet(shape: Shape, num_classes: int, width: int = 16,
            mean: float = 0.5, std: float = 0.5) -> nn.Module:
    """A small ReLU ConvNet: three 3×3 convolutions (widths w, 2w, 2w; strides 1, 2, 2) and a linear head."""
    c, h, w_ = shape
    size = ((h + 3) // 4) * ((w_ + 3) // 4)
    return nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * width * size, num_classes),
    )
