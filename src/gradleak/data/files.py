"""Datasets the user owns, read from a folder (``--data-dir``); gradleak never downloads them.

* ``cifar10`` / ``cifar100``: the python-pickle batches (``data_batch_1..5``, ``test_batch``;
  ``train``, ``test``), read with a restricted unpickler that only rebuilds numpy arrays —
  a batch that asks for any other class or function is refused, never executed.
* ``mnist-idx`` / ``fashion-mnist``: the IDX files (``train-images-idx3-ubyte`` ... optionally
  ``.gz``), with their magic numbers and sizes checked.
* ``imagefolder``: one sub-folder per class, images read with Pillow.

Malformed input (wrong magic number, truncated batch, empty folder, missing files) raises
:class:`~gradleak.core.errors.DataError` saying what was found, what was expected and the fix.

Example:
    >>> from gradleak.data import load_dataset
    >>> ds = load_dataset("cifar10", data_dir="~/data/cifar-10-batches-py", split="test")  # doctest: +SKIP
    >>> ds.shape, ds.num_classes, len(ds)  # doctest: +SKIP
    ((3, 32, 32), 10, 10000)
"""

from __future__ import annotations

import gzip
import logging
import math
import pickle
import struct
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradleak.core.errors import ConfigError, DataError, LimitError
from gradleak.core.limits import check_pixels
from gradleak.data.base import Dataset, loader

log = logging.getLogger(__name__)

SPLITS = ("train", "test", "all")
MAX_IDX_BYTES = 2**30
"""Decompressed size of one IDX file (MNIST's training images: 45 MiB)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds plain containers and numpy arrays, and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def safe_unpickle(path: Path) -> Any:
    """Load a data pickle allowing only numpy array reconstruction (``encoding="bytes"`` for py2 files)."""
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("refused global"):
            raise DataError(f"{path} was refused: it is a pickle that asks for {str(err)[15:]}, "
                            "but a CIFAR batch holds only numpy arrays and lists; "
                            "use the original files from the CIFAR website") from err
        raise DataError(f"{path} is not a readable CIFAR batch ({err}); "
                        "the file is corrupt or truncated: extract it again") from err
    except (EOFError, ValueError, TypeError, IndexError, AttributeError, OverflowError) as err:
        raise DataError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); "
                        "extract the CIFAR archive again") from err


def _need_dir(data_dir: str | Path | None, name: str, expected: str) -> Path:
    if data_dir is None:
        raise DataError(f"{name} reads files you own and gradleak never downloads them: pass "
                        f"--data-dir DIR (data_dir=...), the folder holding {expected}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(f"{name}: data_dir {path} is not a folder; expected the folder holding {expected}")
    return path


def _check_split(split: str, name: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"{name} split must be one of {', '.join(SPLITS)}, got {split!r}")


def _find(root: Path, names: Sequence[str], subdirs: Sequence[str], what: str) -> Path:
    for sub in ("", *subdirs):
        for n in names:
            if (root / sub / n).is_file():
                return root / sub / n
    raise DataError(f"{what}: no file {' or '.join(names)} in {root}"
                    + (f" (or its sub-folder {', '.join(subdirs)})" if subdirs else "")
                    + "; point --data-dir at the extracted dataset folder")


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch → ``(N, 3, 32, 32)`` uint8 images and ``(N,)`` int64 labels."""
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a CIFAR batch dict with 'data'")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [k for k in ("data", label_key) if k not in batch]
    if missing:
        raise DataError(f"{path} has no {', '.join(missing)} entry (keys: {sorted(batch)}); "
                        "is it the right CIFAR variant?")
    data = np.asarray(batch["data"])
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (ValueError, TypeError, OverflowError) as err:
        raise DataError(f"{path}: its {label_key!r} are not whole numbers ({str(err)[:120]}); "
                        "the batch is corrupt or not CIFAR") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: data has shape {data.shape} and dtype {data.dtype}, expected "
                        "(N, 3072) uint8; the batch is truncated or not CIFAR")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.size} labels; the batch is truncated")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar(name: str, data_dir: str | Path | None, split: str, files: dict[str, list[str]],
           subdir: str, label_key: str, classes: int) -> Dataset:
    _check_split(split, name)
    root = _need_dir(data_dir, name, " ".join(files["train"] + files["test"]))
    wanted = files["train"] + files["test"] if split == "all" else files[split]
    paths = [_find(root, [f], [subdir], name) for f in wanted]
    parts = [read_cifar_batch(p, label_key) for p in paths]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if len(labels) == 0:
        raise DataError(f"{name}: the {split} batches in {root} hold no images; extract the CIFAR archive again")
    if labels.min() < 0 or labels.max() >= classes:
        raise DataError(f"{name}: labels range over [{labels.min()}, {labels.max()}], "
                        f"expected [0, {classes})")
    x = torch.from_numpy(images).float().div_(255.0)
    return Dataset(name, x, torch.from_numpy(labels), classes, f"{root} ({split})")


@loader(user_owned=True, native_splits=True, shape=(3, 32, 32), classes=10)
def cifar10(data_dir: str | Path | None = None, split: str = "train") -> Dataset:
    """CIFAR-10 (3×32×32, 10 classes) from your python-pickle batches (--data-dir; never downloaded).

    Args:
        data_dir: folder with ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` (or its
            parent holding ``cifar-10-batches-py``).
        split: ``train`` (50000), ``test`` (10000) or ``all``.
    """
    files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    return _cifar("cifar10", data_dir, split, files, "cifar-10-batches-py", "labels", 10)


@loader(user_owned=True, native_splits=True, shape=(3, 32, 32), classes=100)
def cifar100(data_dir: str | Path | None = None, split: str = "train", coarse: bool = False) -> Dataset:
    """CIFAR-100 (3×32×32, 100 fine or 20 coarse classes) from your python-pickle files (--data-dir).

    Args:
        data_dir: folder with ``train`` and ``test`` (or its parent holding ``cifar-100-python``).
        split: ``train`` (50000), ``test`` (10000) or ``all``.
        coarse: use the 20 super-classes instead of the 100 fine classes.
    """
    files = {"train": ["train"], "test": ["test"]}
    key, classes = ("coarse_labels", 20) if coarse else ("fine_labels", 100)
    return _cifar("cifar100", data_dir, split, files, "cifar-100-python", key, classes)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (optionally gzipped), checking its magic number and size."""
    try:
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)  # a decompression bomb (or a huge file) stops here
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} could not be read ({err}); the file is corrupt or truncated") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DataError(f"{path} holds more than {MAX_IDX_BYTES // 2**20} MiB, more than any MNIST-style IDX "
                        "file; it is not the dataset (or a decompression bomb)")
    if len(raw) < 4:
        raise DataError(f"{path} is {len(raw)} bytes long, too short for an IDX header")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expected_magic:
        raise DataError(f"{path} has magic number {magic:#010x}, expected {expected_magic:#010x} "
                        f"(IDX unsigned bytes, {expected_magic & 0xFF} dimensions); wrong or corrupt file")
    ndim = expected_magic & 0xFF
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    size = math.prod(dims)
    if dims[0] == 0:
        raise DataError(f"{path} holds no items (its header says 0); the file is empty or truncated")
    if len(body) != size:
        raise DataError(f"{path} holds {len(body)} data bytes but its header {dims} says {size}; "
                        "the file is truncated or corrupt")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _idx(name: str, data_dir: str | Path | None, split: str) -> Dataset:
    _check_split(split, name)
    expected = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                "t10k-labels-idx1-ubyte")
    root = _need_dir(data_dir, name, expected + " (optionally .gz)")
    xs, ys = [], []
    for prefix in (["train", "t10k"] if split == "all" else ["train" if split == "train" else "t10k"]):
        found = []
        for kind, magic in (("images-idx3-ubyte", 2051), ("labels-idx1-ubyte", 2049)):
            stems = [f"{prefix}-{kind}", f"{prefix}-{kind.replace('-idx', '.idx')}"]
            path = _find(root, [s + ext for s in stems for ext in ("", ".gz")], ["raw"], name)
            found.append(read_idx(path, magic))
        images, labels = found
        if len(images) != len(labels):
            raise DataError(f"{name}: {prefix} has {len(images)} images but {len(labels)} labels")
        xs.append(images)
        ys.append(labels)
    labels = torch.from_numpy(np.concatenate(ys).astype(np.int64))
    if len(labels) == 0:
        raise DataError(f"{name}: the {split} files in {root} hold no images")
    if int(labels.max()) >= 10:
        raise DataError(f"{name}: labels reach {int(labels.max())}, expected 0..9")
    x = torch.from_numpy(np.concatenate(xs)[:, None].copy()).float().div_(255.0)
    return Dataset(name, x, labels, 10, f"{root} ({split})")


@loader(user_owned=True, native_splits=True, shape=(1, 28, 28), classes=10)
def mnist_idx(data_dir: str | Path | None = None, split: str = "train") -> Dataset:
    """MNIST (1×28×28, 10 classes) from your IDX files, .gz or not (--data-dir; never downloaded).

    Args:
        data_dir: folder with ``train-images-idx3-ubyte`` etc. (or its ``raw`` sub-folder).
        split: ``train`` (60000), ``test`` (10000) or ``all``.
    """
    return _idx("mnist-idx", data_dir, split)


@loader(user_owned=True, native_splits=True, shape=(1, 28, 28), classes=10)
def fashion_mnist(data_dir: str | Path | None = None, split: str = "train") -> Dataset:
    """Fashion-MNIST (1×28×28, 10 classes) from your IDX files, .gz or not (--data-dir).

    Args:
        data_dir: folder with ``train-images-idx3-ubyte`` etc. (or its ``raw`` sub-folder).
        split: ``train`` (60000), ``test`` (10000) or ``all``.
    """
    return _idx("fashion-mnist", data_dir, split)


@loader(user_owned=True)
def image_folder(data_dir: str | Path | None = None, size: int | None = None,
                 channels: int | None = None) -> Dataset:
    """Your images, one sub-folder per class (sorted names → labels 0..K-1), read with Pillow.

    Args:
        data_dir: the folder whose sub-folders are the classes.
        size: resize every image to ``size × size``; ``None`` keeps the first image's size
            (other sizes are resized to it).
        channels: 1 (grey) or 3 (RGB); ``None`` picks 1 when every image is greyscale.
    """
    from PIL import Image, UnidentifiedImageError

    root = _need_dir(data_dir, "imagefolder", "one sub-folder of images per class")
    if channels not in (None, 1, 3):
        raise ConfigError(f"imagefolder channels must be 1, 3 or None, got {channels!r}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"imagefolder: {root} has no class sub-folders; expected DIR/CLASS/IMAGE.png")
    files = {c: sorted(p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
             for c in classes}
    empty = [c for c, fs in files.items() if not fs]
    if empty:
        raise DataError(f"imagefolder: class folder(s) {', '.join(empty[:5])} in {root} hold no images "
                        f"({', '.join(IMAGE_SUFFIXES)}); remove them or add images")
    if len(classes) < 2:
        raise DataError(f"imagefolder: {root} has one class folder ({classes[0]}); a classifier needs two")
    images, labels = [], []
    for label, c in enumerate(classes):
        for path in files[c]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(path) as im:
                        check_pixels(im.height, im.width, f"imagefolder: {path}")
                        im.load()
                        images.append(im.copy())
            except LimitError as err:
                raise DataError(str(err) + " or remove it") from None
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError,
                    struct.error, EOFError, zlib.error) as err:
                raise DataError(f"imagefolder: {path} is not a readable image ({str(err)[:160]}); "
                                "remove or replace it") from None
            labels.append(label)
    grey = all(im.mode in ("1", "L", "I", "I;16", "F") for im in images)
    mode = "L" if (channels == 1 or (channels is None and grey)) else "RGB"
    target = (size, size) if size is not None else images[0].size
    if size is None and any(im.size != target for im in images):
        log.info("imagefolder: images differ in size; resizing all to %s", target)
    arrays = [np.asarray(im.convert(mode).resize(target, Image.BICUBIC) if im.size != target
                         else im.convert(mode)) for im in images]
    x = torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0)
    x = x[:, None] if mode == "L" else x.permute(0, 3, 1, 2)
    return Dataset("imagefolder", x.contiguous(), torch.tensor(labels, dtype=torch.int64), len(classes),
                   f"{root} (classes: {', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})")
