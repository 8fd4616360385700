"""The ``Generator`` interface that generative attacks (GGL, GIFD) search.

A generator maps a latent ``z`` of shape ``(N, latent_dim)`` and class indices ``y`` of shape
``(N,)`` to images in ``[0, 1]`` of shape ``(N, *image_shape)``. It is a chain of explicit
*stages*: ``h_0 = z``, ``h_{k+1} = stage_forward(k, h_k, y)``, and the last stage returns the
image. GGL only calls ``forward``; GIFD optimises the intermediate features ``h_k`` and calls
``forward_from(k, h_k, y)`` to finish the image.

A user's own generator plugs in by subclassing :class:`Generator` (set ``latent_dim``,
``num_classes``, ``image_shape`` and build ``self.stages``, each stage a module called as
``stage(h, y)``), or, for a module that only has ``forward(z, y)``, by wrapping it in
:class:`ModuleGenerator` (a single stage).

Wrapping a BigGAN (e.g. ``pytorch_pretrained_biggan``) follows the same pattern: stage 0 embeds
``concat(z, class_embedding(one_hot(y)))`` and runs the first linear layer; each GenBlock is one
stage that receives ``(h, y)`` and reads the frozen conditioning vector computed in stage 0; the
last stage applies the output convolution, ``(tanh(x) + 1) / 2`` to map to ``[0, 1]`` and an area
resize to the attacked model's resolution.

Example:
    >>> import torch
    >>> from gradleak.generative.dcgan import ConditionalDCGAN
    >>> g = ConditionalDCGAN(num_classes=10, width=8).eval()
    >>> z, y = torch.zeros(2, g.latent_dim), torch.tensor([1, 7])
    >>> x = g(z, y)
    >>> x.shape, bool(((x >= 0) & (x <= 1)).all())
    (torch.Size([2, 1, 28, 28]), True)
    >>> h = g.stage_forward(0, z, y)
    >>> bool(torch.allclose(g.forward_from(1, h, y), x))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from gradleak.core.errors import ConfigError


class Generator(nn.Module):
    """Base of class-conditional generators with explicit stages.

    Attributes:
        latent_dim: size of the latent vector ``z``.
        num_classes: number of classes the generator is conditioned on (indices ``0..num_classes-1``).
        class_labels: the dataset label that each generator class stands for (``class_labels[k]``
            is the label of generator class ``k``; identity for a generator of all classes).
        image_shape: ``(C, H, W)`` of the images it returns.
        stages: the modules between latent and image, each called as ``stage(h, y)``.
    """

    latent_dim: int
    num_classes: int
    class_labels: tuple[int, ...]
    image_shape: tuple[int, int, int]
    stages: nn.ModuleList

    @property
    def num_stages(self) -> int:
        """Number of stages between latent and image."""
        return len(self.stages)

    def stage_forward(self, k: int, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Run stage ``k`` on its input ``h`` (``h = z`` for ``k = 0``) for classes ``y``."""
        if not 0 <= k < self.num_stages:
            raise ConfigError(f"stage index must be in 0..{self.num_stages - 1}, got {k}")
        return self.stages[k](h, y)

    def forward_from(self, k: int, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Finish the image from the input ``h`` of stage ``k`` (``k = 0``: from the latent)."""
        for j in range(k, self.num_stages):
            h = self.stages[j](h, y)
        return h

    def features(self, z: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """``[z, h_1, ..., image]``: the input of every stage, then the image."""
        out = [z]
        for stage in self.stages:
            out.append(stage(out[-1], y))
        return out

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.forward_from(0, z, y)

    def label_to_class(self, labels: torch.Tensor) -> torch.Tensor:
        """Map dataset labels to generator classes; raise :class:`ConfigError` for unknown labels."""
        table = {int(c): k for k, c in enumerate(self.class_labels)}
        missing = sorted({int(v) for v in labels.flatten().tolist()} - set(table))
        if missing:
            raise ConfigError(
                f"the generator is conditioned on labels {list(self.class_labels)} but the attack needs "
                f"label(s) {missing}; use a generator trained on those classes (e.g. 'mnist-dcgan')"
            )
        return torch.tensor([table[int(v)] for v in labels.flatten().tolist()],
                            dtype=torch.long, device=labels.device).reshape(labels.shape)


class _Call(nn.Module):
    """A stage that calls ``fn(h, y)`` on a wrapped module."""

    def __init__(self, module: nn.Module, fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.module, self.fn = module, fn

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fn(self.module, h, y)


class ModuleGenerator(Generator):
    """Wrap any ``nn.Module`` with ``forward(z, y) -> images in [0, 1]`` as a one-stage Generator.

    Args:
        module: the user's generator.
        latent_dim, num_classes, image_shape: its interface.
        class_labels: dataset label of each generator class (default ``0..num_classes-1``).

    Example:
        >>> import torch
        >>> class Tiny(torch.nn.Module):
        ...     def forward(self, z, y):
        ...         return torch.sigmoid(z[:, :4]).reshape(-1, 1, 2, 2)
        >>> g = ModuleGenerator(Tiny(), latent_dim=8, num_classes=3, image_shape=(1, 2, 2))
        >>> g(torch.zeros(1, 8), torch.tensor([0])).shape
        torch.Size([1, 1, 2, 2])
    """

    def __init__(self, module: nn.Module, *, latent_dim: int, num_classes: int,
                 image_shape: Sequence[int], class_labels: Sequence[int] | None = None) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = int(latent_dim), int(num_classes)
        self.image_shape = tuple(int(s) for s in image_shape)  # type: ignore[assignment]
        self.class_labels = tuple(class_labels) if class_labels is not None else tuple(range(num_classes))
        self.stages = nn.ModuleList([_Call(module, lambda m, h, y: m(h, y))])


def check_compatible(generator: Generator, shape: Sequence[int], num_classes: int | None = None) -> None:
    """Raise :class:`ConfigError` when the generator's images or classes do not fit the attacked model.

    Args:
        generator: the prior.
        shape: the attacked model's input shape ``(C, H, W)``.
        num_classes: the attacked model's number of classes (``None``: not checked).
    """
    problems = []
    if tuple(generator.image_shape) != tuple(shape):
        problems.append(f"it makes images of shape {tuple(generator.image_shape)} but the model takes "
                        f"{tuple(shape)}")
    if num_classes is not None and max(generator.class_labels) >= num_classes:
        problems.append(f"it is conditioned on labels up to {max(generator.class_labels)} but the model has "
                        f"only {num_classes} classes")
    if problems:
        raise ConfigError("generator does not fit the attacked model: " + "; ".join(problems)
                          + " (train a prior for this dataset: gradleak prior train --dataset NAME)")
