"""Datasets in pixel space ``[0, 1]`` and seeded batch sampling (loaders declared in ``core.builtins``)."""

from gradleak.data.base import LABEL_MODES, Dataset, load_dataset, sample_batch

__all__ = ["Dataset", "LABEL_MODES", "load_dataset", "sample_batch"]
