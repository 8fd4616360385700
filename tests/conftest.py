"""Shared fixtures: small models and updates, seeded; no network anywhere."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is as fast and never oversubscribes


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run only where PyTorch sees a CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


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
