"""Datasets in pixel space ``[0, 1]`` and seeded batch sampling."""

from gradleak.data import embedded  # noqa: F401  (registers the embedded datasets)
from gradleak.data.base import LABEL_MODES, Dataset, load_dataset, sample_batch

__all__ = ["Dataset", "LABEL_MODES", "load_dataset", "sample_batch"]
