"""Datasets in pixel space ``[0, 1]`` and seeded batch sampling."""

from gradleak.data import embedded, faces, files, natural  # noqa: F401  (register the datasets)
from gradleak.data.base import LABEL_MODES, Dataset, load_dataset, sample_batch

__all__ = ["Dataset", "LABEL_MODES", "load_dataset", "sample_batch"]
