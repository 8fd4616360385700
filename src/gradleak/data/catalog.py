"""What ``gradleak datasets`` shows: shape, classes, size and source of every registered dataset.

Embedded datasets are loaded (they are small and offline); datasets read from the user's
files are loaded only when a ``data_dir`` is given, and otherwise described from their format.

Example:
    >>> from gradleak.data.catalog import describe_datasets
    >>> rows = {r["name"]: r for r in describe_datasets()}
    >>> rows["faces"]["shape"], rows["faces"]["classes"], rows["faces"]["size"]
    ([1, 25, 25], 2, 200)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradleak.core.errors import GradleakError
from gradleak.core.registry import DATASETS

USER_OWNED: dict[str, dict[str, Any]] = {
    "cifar10": {"shape": [3, 32, 32], "classes": 10, "size": "50000 train + 10000 test",
                "source": "your CIFAR-10 python batches (--data-dir)"},
    "cifar100": {"shape": [3, 32, 32], "classes": 100, "size": "50000 train + 10000 test",
                 "source": "your CIFAR-100 python files (--data-dir; coarse=True: 20 classes)"},
    "mnist-idx": {"shape": [1, 28, 28], "classes": 10, "size": "60000 train + 10000 test",
                  "source": "your MNIST IDX files, .gz or not (--data-dir)"},
    "fashion-mnist": {"shape": [1, 28, 28], "classes": 10, "size": "60000 train + 10000 test",
                      "source": "your Fashion-MNIST IDX files, .gz or not (--data-dir)"},
    "imagefolder": {"shape": "from the images", "classes": "one per sub-folder", "size": "your images",
                    "source": "your folder DIR/CLASS/IMAGE (--data-dir), read with Pillow"},
}


def describe_datasets(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per registered dataset: name, shape, classes, size, source (or the error met loading it).

    Args:
        data_dir: passed to the datasets that read the user's files; without it they are
            described from their format, not loaded.
    """
    rows = []
    for name in DATASETS.names():
        needs_dir = bool(getattr(DATASETS.get(name), "user_owned", False))
        if needs_dir and data_dir is None:
            static = USER_OWNED.get(name, {"shape": "?", "classes": "?", "size": "?",
                                           "source": "your files (--data-dir)"})
            rows.append({"name": name, **static})
            continue
        try:
            ds = DATASETS.create(name, **({"data_dir": data_dir} if needs_dir else {}))
        except GradleakError as err:
            rows.append({"name": name, "shape": "?", "classes": "?", "size": "?", "source": f"error: {err}"})
            continue
        rows.append({**ds.describe(), "name": name})
    return rows
