"""The dataset contract and seeded batch sampling.

Every dataset is a :class:`Dataset`: pixels in ``[0, 1]`` of shape ``(N, C, H, W)``
(float32) and integer labels ``(N,)``. Normalisation belongs to the model.

Example:
    >>> from gradleak.data import load_dataset, sample_batch
    >>> ds = load_dataset("digits")
    >>> truth = sample_batch(ds, 4, seed=0, label_mode="distinct")
    >>> truth.inputs.shape, len(set(truth.labels.tolist()))
    (torch.Size([4, 1, 8, 8]), 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from gradleak.core.errors import ConfigError
from gradleak.core.registry import DATASETS
from gradleak.core.types import GroundTruth

LabelMode = Literal["random", "distinct", "same"]
LABEL_MODES: tuple[str, ...] = ("random", "distinct", "same")


@dataclass(frozen=True)
class Dataset:
    """An in-memory image classification dataset in pixel space.

    Args:
        name: registry name.
        inputs: ``(N, C, H, W)`` float32 in ``[0, 1]``.
        labels: ``(N,)`` int64 in ``[0, num_classes)``.
        num_classes: number of classes.
        source: where the data comes from (package, file path, ...).
        split: ``all`` (as loaded) or the split it is (``train``, ``validation``, ``attack``;
            see :mod:`gradleak.data.splits`).
        indices: for a split, each example's position in the dataset it was cut from.
    """

    name: str
    inputs: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    source: str = ""
    split: str = "all"
    indices: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one example ``(C, H, W)``."""
        return tuple(self.inputs.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def describe(self) -> dict[str, Any]:
        """Shape, classes, size and source, as the CLI lists them."""
        return {"name": self.name, "shape": list(self.shape), "classes": self.num_classes,
                "size": len(self), "source": self.source}


def loader(*, user_owned: bool = False, native_splits: bool = False, shape: tuple[int, int, int] | None = None,
           classes: int | None = None) -> Any:
    """Declare a dataset loader's capabilities as attributes (read by the catalog and the splits).

    Args:
        user_owned: the loader reads the user's files and takes ``data_dir=``.
        native_splits: the loader takes ``split=`` and has its own train/test split.
        shape, classes: one input's shape and the number of classes with default options (a
            ``size=`` option replaces the height and width), so checks need not load the data.

    Example:
        >>> @loader(native_splits=True)
        ... def toy(split: str = "train"): ...
        >>> toy.native_splits, toy.user_owned
        (True, False)
    """

    def wrap(fn: Any) -> Any:
        fn.user_owned, fn.native_splits, fn.shape, fn.classes = user_owned, native_splits, shape, classes
        return fn

    return wrap


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a registered dataset by name (``data_dir=`` for user-owned files)."""
    return DATASETS.create(name, **options)


def sample_batch(
    dataset: Dataset, batch_size: int, *, seed: int, label_mode: str = "random"
) -> GroundTruth:
    """Draw a seeded batch without replacement (the examples at :func:`sample_indices`).

    Args:
        dataset: where to draw from.
        batch_size: number of examples (1 ≤ batch_size ≤ len(dataset)).
        seed: every random choice flows from it.
        label_mode: ``random`` (duplicates allowed), ``distinct`` (all labels differ) or
            ``same`` (one label for the whole batch).
    """
    idx = sample_indices(dataset, batch_size, seed=seed, label_mode=label_mode)
    return GroundTruth(dataset.inputs[idx].clone(), dataset.labels[idx].clone())


def sample_indices(dataset: Dataset, batch_size: int, *, seed: int, label_mode: str = "random") -> torch.Tensor:
    """The positions in ``dataset`` of the batch :func:`sample_batch` draws (same arguments).

    Example:
        >>> from gradleak.data import load_dataset
        >>> sample_indices(load_dataset("digits"), 3, seed=0).tolist() == sample_indices(
        ...     load_dataset("digits"), 3, seed=0).tolist()
        True
    """
    n = len(dataset)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be an integer >= 1, got {batch_size!r}")
    if batch_size > n:
        raise ConfigError(f"batch size {batch_size} is larger than dataset {dataset.name!r} ({n} examples)")
    if label_mode not in LABEL_MODES:
        raise ConfigError(f"label mode must be one of {', '.join(LABEL_MODES)}, got {label_mode!r}")
    gen = torch.Generator().manual_seed(seed)
    if label_mode == "random":
        return torch.randperm(n, generator=gen)[:batch_size]
    if label_mode == "distinct":
        present = dataset.labels.unique()  # sorted; every class when none is filtered out
        if batch_size > len(present):
            raise ConfigError(
                f"distinct labels need batch size <= {len(present)} classes, got {batch_size}; "
                "use --label-mode random"
            )
        classes = present[torch.randperm(len(present), generator=gen)[:batch_size]]
        return torch.stack([_pick(dataset.labels == c, gen, 1, dataset)[0] for c in classes])
    counts = torch.bincount(dataset.labels, minlength=dataset.num_classes)
    ok = (counts >= batch_size).nonzero().flatten()
    if len(ok) == 0:
        raise ConfigError(f"no class of {dataset.name!r} has {batch_size} examples")
    c = ok[torch.randint(len(ok), (1,), generator=gen)]
    return _pick(dataset.labels == c, gen, batch_size, dataset)


def _pick(mask: torch.Tensor, gen: torch.Generator, k: int, dataset: Dataset) -> torch.Tensor:
    pool = mask.nonzero().flatten()
    if len(pool) < k:
        raise ConfigError(f"dataset {dataset.name!r} has too few examples of a requested class")
    return pool[torch.randperm(len(pool), generator=gen)[:k]]
