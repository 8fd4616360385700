"""Training and held-out splits of a registered dataset.

A dataset whose loader declares ``native_splits`` (natural32, cifar10/100, the IDX files) uses its own
split; any other dataset is split per class by a fixed seeded permutation, so the split is a
property of the data (the same for every scenario seed).

Example:
    >>> from gradleak.data.splits import load_splits
    >>> train, test = load_splits("digits", {})
    >>> len(train) + len(test), round(len(test) / (len(train) + len(test)), 1)
    (1797, 0.2)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from gradleak.core.errors import DataError
from gradleak.core.registry import DATASETS
from gradleak.data.base import Dataset

TEST_FRACTION = 0.2
SPLIT_SEED = 20240601


def split_dataset(dataset: Dataset, *, test_fraction: float = TEST_FRACTION,
                  seed: int = SPLIT_SEED) -> tuple[Dataset, Dataset]:
    """Split per class: ``round(n_c * test_fraction)`` (at least one) held-out examples of each class.

    Args:
        dataset: the data to split.
        test_fraction: share of each class held out.
        seed: seeds the permutation (fixed by default so the split never moves).
    """
    gen = torch.Generator().manual_seed(seed)
    test_idx = []
    for c in range(dataset.num_classes):
        pool = (dataset.labels == c).nonzero().flatten()
        if len(pool) == 0:
            continue
        if len(pool) < 2:
            raise DataError(f"dataset {dataset.name!r} has {len(pool)} example of class {c}; "
                            "a train/test split needs at least 2 per class")
        k = max(1, int(round(len(pool) * test_fraction)))
        test_idx.append(pool[torch.randperm(len(pool), generator=gen)[:k]])
    test_mask = torch.zeros(len(dataset), dtype=torch.bool)
    test_mask[torch.cat(test_idx)] = True
    return _subset(dataset, ~test_mask, "train"), _subset(dataset, test_mask, "test")


def _subset(dataset: Dataset, mask: torch.Tensor, split: str) -> Dataset:
    return Dataset(dataset.name, dataset.inputs[mask].contiguous(), dataset.labels[mask].contiguous(),
                   dataset.num_classes, f"{dataset.source} [{split} split]")


def has_native_split(name: str) -> bool:
    """Whether the registered loader ``name`` takes a ``split`` option."""
    return bool(getattr(DATASETS.get(name), "native_splits", False))


def load_splits(name: str, options: Mapping[str, Any]) -> tuple[Dataset, Dataset]:
    """The training and held-out splits of the registered dataset ``name`` loaded with ``options``."""
    opts = {k: v for k, v in options.items() if k != "split"}
    if has_native_split(name):
        return DATASETS.create(name, split="train", **opts), DATASETS.create(name, split="test", **opts)
    return split_dataset(DATASETS.create(name, **opts))
