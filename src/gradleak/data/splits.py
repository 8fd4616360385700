"""The three disjoint splits every dataset has: ``train``, ``validation`` and ``attack``.

* ``train`` — what trained models and generator priors learn from.
* ``validation`` — where any hyper-parameter is chosen (radii, step sizes, ...).
* ``attack`` — the only place a scored batch comes from (for untrained models too).

A dataset whose loader declares ``native_splits`` (natural32, cifar10/100, the IDX files) keeps
its own training split as ``train``; its test split is halved per class, seeded, into
``validation`` and ``attack``. Any other dataset is split per class by a fixed seeded permutation:
``round(0.2·n_c)`` (at least one) examples of class ``c`` are held out, the first half of them
become ``validation`` and the rest ``attack`` (so ``attack`` holds at least one per class). The
``train`` split is exactly the training split gradleak used before ``validation`` existed, which
is what the shipped priors were trained on.

The splits are disjoint *by content*, not only by position: identical images (same 8-bit
pixels, :mod:`gradleak.data.fingerprint`) are kept together on one side, and a held-out image
of a native split that also occurs in its training split is dropped from the held-out side.

Two dataset options are read here and never passed to the loader: ``split_seed`` (another
seeded split of a user's data; default :data:`SPLIT_SEED`) and ``classes`` (keep only these
labels in every split, e.g. ``"5-9"`` or ``[5, 6, 7]``; the number of classes is unchanged).

Each split records ``split`` and ``indices``: the position of every example in the dataset it
was cut from (the loaded dataset, or the loader's own ``split="train"``/``"test"`` part).

Example:
    >>> from gradleak.data.splits import load_splits
    >>> s = load_splits("digits", {})
    >>> len(s.train), len(s.validation), len(s.attack)
    (1438, 178, 181)
    >>> set(s.attack.indices.tolist()) & set(s.train.indices.tolist())
    set()
    >>> load_split("digits", {"classes": "5-9"}, "attack").labels.unique().tolist()
    [5, 6, 7, 8, 9]
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from gradleak.core.errors import ConfigError, DataError
from gradleak.core.registry import DATASETS
from gradleak.data.base import Dataset
from gradleak.data.fingerprint import image_hashes

SPLITS: tuple[str, ...] = ("train", "validation", "attack")
HELD_OUT_FRACTION = 0.2
"""Share of each class held out (validation + attack) for datasets without native splits."""
SPLIT_SEED = 20240601
SPLIT_OPTIONS = ("split_seed", "classes")
"""Dataset options the splits read (never passed to the loader)."""


class Splits(NamedTuple):
    """The three disjoint splits of one dataset."""

    train: Dataset
    validation: Dataset
    attack: Dataset


def _groups(dataset: Dataset) -> tuple[list[list[int]], list[str]]:
    """Indices grouped by identical content (first-occurrence order) and every example's hash."""
    hashes = image_hashes(dataset.inputs)
    first: dict[str, int] = {}
    groups: list[list[int]] = []
    for i, h in enumerate(hashes):
        if h not in first:
            first[h] = len(groups)
            groups.append([])
        groups[first[h]].append(i)
    return groups, hashes


def split_dataset(dataset: Dataset, *, held_out: float = HELD_OUT_FRACTION, seed: int = SPLIT_SEED) -> Splits:
    """Split a dataset without native splits per class into train / validation / attack.

    Args:
        dataset: the data to split.
        held_out: share of each class held out (half validation, half attack).
        seed: seeds the permutation (fixed by default so the split never moves).
    """
    groups, _ = _groups(dataset)
    gen = torch.Generator().manual_seed(seed)
    group_label = torch.tensor([int(dataset.labels[g[0]]) for g in groups], dtype=torch.long)
    where = torch.zeros(len(dataset), dtype=torch.long)  # 0 train, 1 validation, 2 attack
    for c in range(dataset.num_classes):
        pool = (group_label == c).nonzero().flatten()
        if len(pool) == 0:
            continue
        if len(pool) < 2:
            raise DataError(f"dataset {dataset.name!r} has {len(pool)} distinct image(s) of class {c}; "
                            "a train/attack split needs at least 2 per class")
        k = max(1, int(round(len(pool) * held_out)))
        held = pool[torch.randperm(len(pool), generator=gen)[:k]]
        for rank, g in enumerate(held.tolist()):
            where[groups[g]] = 1 if rank < k // 2 else 2
    return Splits(*(_subset(dataset, (where == s).nonzero().flatten(), name, "the loaded dataset")
                    for s, name in enumerate(SPLITS)))


def split_held_out(train: Dataset, test: Dataset, *, seed: int = SPLIT_SEED) -> Splits:
    """A native train/test pair → train / validation / attack: the test part halved per class,
    seeded, after dropping test images whose content also occurs in the training part."""
    seen = set(image_hashes(train.inputs))
    groups, hashes = _groups(test)
    gen = torch.Generator().manual_seed(seed)
    where = torch.full((len(test),), -1, dtype=torch.long)
    for c in range(test.num_classes):
        pool = [g for g in groups if int(test.labels[g[0]]) == c and hashes[g[0]] not in seen]
        for rank, j in enumerate(torch.randperm(len(pool), generator=gen).tolist()):
            where[pool[j]] = 1 if rank < len(pool) // 2 else 2
    whole = _subset(train, torch.arange(len(train)), "train", "the loader's split='train'")
    return Splits(whole, *(_subset(test, (where == s).nonzero().flatten(), name, "the loader's split='test'")
                           for s, name in ((1, "validation"), (2, "attack"))))


def _subset(dataset: Dataset, idx: torch.Tensor, split: str, origin: str) -> Dataset:
    base = dataset.indices if dataset.indices is not None else torch.arange(len(dataset))
    return Dataset(dataset.name, dataset.inputs[idx].contiguous(), dataset.labels[idx].contiguous(),
                   dataset.num_classes, f"{dataset.source} [{split} split; indices into {origin}]",
                   split=split, indices=base[idx].clone())


def has_native_split(name: str) -> bool:
    """Whether the registered loader ``name`` takes a ``split`` option."""
    return bool(getattr(DATASETS.get(name), "native_splits", False))


def parse_class_list(value: Any) -> tuple[int, ...]:
    """``"5-9"``, ``"1,3"``, ``5`` or ``[5, 6]`` → sorted labels; anything else raises ConfigError.

    Example:
        >>> parse_class_list("5-9"), parse_class_list([3, 1])
        ((5, 6, 7, 8, 9), (1, 3))
    """
    out: set[int] = set()
    try:
        if isinstance(value, str):
            for part in value.split(","):
                lo, dash, hi = part.strip().partition("-")
                out.update(range(int(lo), int(hi) + 1) if dash else [int(lo)])
        else:
            out.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    except (TypeError, ValueError):
        out.clear()
    if not out or any(c < 0 for c in out):
        raise ConfigError(f"dataset option classes must look like '5-9', '1,3' or [5, 6], got {value!r}")
    return tuple(sorted(out))


def load_splits(name: str, options: Mapping[str, Any]) -> Splits:
    """The train / validation / attack splits of the registered dataset ``name`` loaded with ``options``.

    Splits of datasets that ship with gradleak are kept in memory for the process (they never
    change); a user's files are read again on every call.
    """
    if getattr(DATASETS.get(name), "user_owned", False):
        return _load_splits(name, options)
    try:
        key = json.dumps({k: options[k] for k in sorted(options)})
    except TypeError:  # an option that is not JSON (a tensor, a path object): do not cache
        return _load_splits(name, options)
    return _cached_splits(name, key)


@functools.lru_cache(maxsize=8)
def _cached_splits(name: str, key: str) -> Splits:
    return _load_splits(name, json.loads(key))


def _load_splits(name: str, options: Mapping[str, Any]) -> Splits:
    opts = {k: v for k, v in options.items() if k != "split" and k not in SPLIT_OPTIONS}
    seed = options.get("split_seed", SPLIT_SEED)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"dataset option split_seed must be an integer, got {seed!r}")
    if has_native_split(name):
        splits = split_held_out(DATASETS.create(name, split="train", **opts),
                                DATASETS.create(name, split="test", **opts), seed=seed)
    else:
        splits = split_dataset(DATASETS.create(name, **opts), seed=seed)
    if options.get("classes") is None:
        return splits
    keep = torch.tensor(parse_class_list(options["classes"]))
    parts = []
    for part in splits:
        idx = torch.isin(part.labels, keep).nonzero().flatten()
        if len(idx) == 0:
            raise DataError(f"dataset {name!r}: its {part.split} split has no example of classes "
                            f"{keep.tolist()}")
        parts.append(Dataset(part.name, part.inputs[idx], part.labels[idx], part.num_classes,
                             f"{part.source} (classes {keep.tolist()})", split=part.split,
                             indices=part.indices[idx] if part.indices is not None else None))
    return Splits(*parts)


def load_split(name: str, options: Mapping[str, Any], split: str) -> Dataset:
    """One split (``train``, ``validation`` or ``attack``) of the registered dataset ``name``."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return getattr(load_splits(name, options), split)
