"""Shared fixtures: small models and updates, seeded; no network anywhere."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is as fast and never oversubscribes


@pytest.fixture(scope="session")
def digits():
    """The embedded 8×8 digits (fast)."""
    from gradleak.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def mnist():
    """The embedded 28×28 MNIST digits."""
    from gradleak.data import load_dataset

    return load_dataset("mnist")
