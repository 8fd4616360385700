"""Datasets in pixel space ``[0, 1]``, their train / validation / attack splits, and seeded batch
sampling (loaders declared in ``core.builtins``)."""

from gradleak.data.base import LABEL_MODES, Dataset, load_dataset, sample_batch, sample_indices
from gradleak.data.splits import SPLITS, Splits, load_split, load_splits

__all__ = ["Dataset", "LABEL_MODES", "SPLITS", "Splits", "load_dataset", "load_split", "load_splits",
           "sample_batch", "sample_indices"]
