"""``natural32``: CIFAR-shaped colour crops of the photos shipped with scikit-image and scikit-learn.

Ten source photos, one class each (astronaut, chelsea, coffee, rocket, hubble, ihc, retina,
motorcycle, china, flower). Each example is a square crop at a seeded position and scale,
resized to ``size × size`` with an anti-aliasing bicubic filter. Near-constant crops (the
black sky of the Hubble field, the border of the retina) are redrawn. Nothing downloads.

The photo is split spatially: training crops come from the left 75 % of the photo and test
crops from the right 25 %, so a held-out crop shares no pixel with any training crop.

The first build takes a few seconds and is cached as ``uint8`` in
``$GRADLEAK_CACHE/datasets`` (default ``~/.cache/gradleak``); later loads read the cache.

Example:
    >>> from gradleak.data import load_dataset
    >>> ds = load_dataset("natural32", per_class=20)
    >>> ds.shape, ds.num_classes, len(ds)
    ((3, 32, 32), 10, 200)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gradleak.core.errors import ConfigError, DataError
from gradleak.core.paths import cache_dir
from gradleak.data.base import Dataset, loader

log = logging.getLogger(__name__)

VERSION = 1
TEST_BAND = 0.25
"""Fraction of each photo's width (the right-hand side) that only test crops come from."""
MIN_STD = 0.04
"""Crops whose pixel standard deviation is below this are redrawn (featureless sky, borders)."""
SPLITS = ("all", "train", "test")



def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[0] if isinstance(img, tuple) else img

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "hubble": _skimage("hubble_deep_field"),
    "ihc": _skimage("immunohistochemistry"),
    "retina": _skimage("retina"),
    "motorcycle": _skimage("stereo_motorcycle"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}
"""Class name → loader of the ``(H, W, 3)`` uint8 photo, in label order."""


def _crops(photo: np.ndarray, count: int, size: int, x_range: tuple[int, int],
           rng: np.random.Generator) -> np.ndarray:
    """``count`` square crops inside columns ``x_range``, resized: ``(count, size, size, 3)`` uint8."""
    img = Image.fromarray(photo[..., :3])
    h = photo.shape[0]
    x_lo, x_hi = x_range
    max_side = min(x_hi - x_lo, h // 2)
    min_side = min(size, max_side)
    out = np.empty((count, size, size, 3), np.uint8)
    made, tries = 0, 0
    while made < count:
        tries += 1
        side = int(round(np.exp(rng.uniform(np.log(min_side), np.log(max_side)))))
        x0 = int(rng.integers(x_lo, x_hi - side + 1))
        y0 = int(rng.integers(0, h - side + 1))
        crop = np.asarray(img.resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + side, y0 + side)))
        if crop.std() / 255.0 < MIN_STD and tries < 50 * count:
            continue
        out[made] = crop
        made += 1
    return out


def build_natural(per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build the crops from the photos (no cache): images ``(N, H, W, 3)`` uint8, labels, is-test flags.

    Per class, ``round(per_class * TEST_BAND)`` crops come from the right-hand test band and
    the rest from the left-hand training region; the order is training crops then test crops.
    """
    rng = np.random.default_rng(seed)
    images, labels, test = [], [], []
    n_test = int(round(per_class * TEST_BAND))
    for label, load in enumerate(PHOTOS.values()):
        photo = load()
        w = photo.shape[1]
        cut = int(round(w * (1 - TEST_BAND)))
        for is_test, count, xr in ((False, per_class - n_test, (0, cut)), (True, n_test, (cut, w))):
            images.append(_crops(photo, count, size, xr, rng))
            labels += [label] * count
            test += [is_test] * count
    return np.concatenate(images), np.asarray(labels, np.int64), np.asarray(test, bool)


def _cache_file(per_class: int, size: int, seed: int) -> Path:
    key = json.dumps({"v": VERSION, "photos": list(PHOTOS), "per_class": per_class, "size": size,
                      "seed": seed, "band": TEST_BAND, "min_std": MIN_STD}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "datasets" / f"natural{size}-{digest}.npz"


def _load_or_build(per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = _cache_file(per_class, size, seed)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return f["images"], f["labels"], f["test"]
        except (OSError, ValueError, KeyError) as err:
            log.warning("natural32 cache %s is unreadable (%s); rebuilding it", path, err)
    log.info("building natural%d (%d crops per class) into %s", size, per_class, path)
    images, labels, test = build_natural(per_class, size, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, images=images, labels=labels, test=test)
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not cache natural32 in %s (%s); set GRADLEAK_CACHE to a writable folder",
                    path.parent, err)
    return images, labels, test


@loader(native_splits=True, shape=(3, 32, 32), classes=10)
def natural32(per_class: int = 300, size: int = 32, split: str = "all", seed: int = 0) -> Dataset:
    """3×32×32 colour crops of 10 photos shipped with scikit-image/scikit-learn (one class per photo).

    Args:
        per_class: crops per photo (75 % training, 25 % test).
        size: side of the square crops in pixels.
        split: ``all``, ``train`` (left 75 % of each photo) or ``test`` (right 25 %).
        seed: seeds the crop positions and scales (the crops are a fixed data set per seed).
    """
    if split not in SPLITS:
        raise ConfigError(f"natural32 split must be one of {', '.join(SPLITS)}, got {split!r}")
    if per_class < 4 or size < 4:
        raise ConfigError(f"natural32 needs per_class >= 4 and size >= 4, got {per_class} and {size}")
    try:
        images, labels, test = _load_or_build(per_class, size, seed)
    except (ImportError, OSError) as err:  # pragma: no cover - the photos ship with the packages
        raise DataError(f"could not read the photos shipped with scikit-image/scikit-learn: {err}; "
                        "reinstall scikit-image and scikit-learn") from err
    keep = np.ones(len(labels), bool) if split == "all" else (test == (split == "test"))
    x = torch.from_numpy(images[keep]).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    y = torch.from_numpy(labels[keep])
    return Dataset("natural32", x, y, len(PHOTOS),
                   f"{split} crops of 10 photos in skimage.data + sklearn.datasets.load_sample_images")
