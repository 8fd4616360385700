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


@pytest.fixture(autouse=True)
def _crash_handler_is_a_failure(request, monkeypatch):
    """Reaching the CLI's last line of defence (an unexpected exception) fails the test: it is a bug.

    A test of the handler itself opts out with ``@pytest.mark.crash_handler``.
    """
    if request.node.get_closest_marker("crash_handler"):
        return
    import importlib

    cli_main = importlib.import_module("gradleak.cli.main")  # the module (gradleak.cli.main is also a function)

    def fail(err: BaseException) -> int:
        pytest.fail(f"the CLI's crash handler was reached (a bug): {type(err).__name__}: {err}")

    monkeypatch.setattr(cli_main, "report_crash", fail)
