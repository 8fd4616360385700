"""gradleak check's engine: every attack and label method, whether it applies, and why not."""

from __future__ import annotations

import torch

from gradleak.core.types import LocalTraining
from gradleak.experiment.applicability import applicability
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.models import build_model


def _rows(report, kind="attacks"):
    return {r["name"]: r for r in report[kind]}


def test_mlp_spear_applies_and_fedavg_unrolled_needs_a_delta(digits):
    model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0, widths=50)
    x, y = digits.inputs[:4], digits.labels[:4]
    rows = _rows(applicability(model, fedsgd_update(model, x, y), shape=(1, 8, 8)))
    assert rows["spear"]["applies"] and rows["ig"]["applies"]
    assert not rows["fedavg-unrolled"]["applies"]
    assert "weight_delta" in rows["fedavg-unrolled"]["problems"][0]["message"]
    # the labels ig would use are restored from the update, and they are the right ones
    assert rows["ig"]["labels"]["labels"] == sorted(y.tolist())
    delta = fedavg_update(model, x, y, LocalTraining(lr=0.01))
    assert _rows(applicability(model, delta, shape=(1, 8, 8)))["fedavg-unrolled"]["applies"]


def test_spear_refuses_a_convnet_and_names_the_layer(digits):
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    update = fedsgd_update(model, digits.inputs[:2], digits.labels[:2])
    report = applicability(model, update, shape=(1, 8, 8))
    spear = _rows(report)["spear"]
    assert not spear["applies"] and "Conv2d" in spear["problems"][0]["message"]
    assert report["model"]["first_weighted_layer"].endswith("(Conv2d)")
    assert spear["requires"].startswith("a first weighted layer nn.Linear")


def test_label_methods_report_their_reasons(digits):
    model = build_model("lenet", shape=(1, 8, 8), num_classes=10, seed=0)
    x, y = digits.inputs[:3], torch.tensor([1, 1, 4])
    methods = _rows(applicability(model, fedsgd_update(model, x, y), shape=(1, 8, 8)), "label_methods")
    assert not methods["idlg"]["applies"] and "batch size 1" in methods["idlg"]["reasons"][0]
    assert not methods["yin"]["applies"] or methods["yin"]["labels"] != [1, 1, 4]  # yin assumes distinct labels
    one = _rows(applicability(model, fedsgd_update(model, x[:1], y[:1]), shape=(1, 8, 8)), "label_methods")
    assert one["idlg"]["applies"] and one["idlg"]["labels"] == [1]
