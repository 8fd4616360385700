"""Fakes shared by the Flower tests: Flower's names (None without flwr), a mocked grid, a recording
attack, the small model and the FedAvg the audit tests wrap.

Example:
    >>> SHAPE
    (1, 8, 8)
"""

from __future__ import annotations

import os

import pytest
import torch

from gradleak.core.types import Reconstruction

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
try:
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg

    HAVE_FLWR = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_FLWR = False
    ArrayRecord = ConfigRecord = Message = MetricRecord = RecordDict = FedAvg = None  # type: ignore[assignment]

needs_flwr = pytest.mark.skipif(not HAVE_FLWR, reason="flwr not installed: pip install 'gradleak[flower]'")
SHAPE = (1, 8, 8)



class Grid:
    def __init__(self):
        self.sent = 0

    def get_node_ids(self):
        return [11, 22, 33]

    def send_and_receive(self, messages, timeout=None):
        self.sent += 1
        return []


class Recorder:
    """A stand-in attack recording what it was given (no check: nothing to refuse)."""

    name = "recorder"

    def __init__(self):
        self.updates = []

    def run(self, model, update, *, shape):
        self.updates.append(update)
        return Reconstruction(torch.full((update.num_examples, *shape), 0.5), None, seconds=0.01)


def small_mlp(widths=(16,)):
    from gradleak.models import build_model

    return build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=widths)


def fedavg3():
    """FedAvg waiting for all three of the mocked grid's nodes."""
    return FedAvg(min_train_nodes=3, min_available_nodes=3)
