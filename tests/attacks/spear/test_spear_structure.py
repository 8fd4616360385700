"""SPEAR (issue 19, natural images): the next layer's shape of a true column, and a budget that
keeps what the finishing steps cost."""

from __future__ import annotations

import pytest
import torch

import gradleak.attacks.spear.attack as spear_attack
from gradleak.attacks.spear.attack import Spear
from gradleak.attacks.spear.budget import Deadline
from gradleak.attacks.spear.structure import OutputSpan
from gradleak.core.types import GroundTruth
from gradleak.data import sample_batch
from gradleak.fl import fedsgd_update
from gradleak.metrics import evaluate
from gradleak.models import build_model


@pytest.fixture(scope="module")
def natural32():
    """The attack split of natural32 (built from shipped photos on first use, then cached)."""
    from gradleak.data.splits import load_split

    return load_split("natural32", {}, "attack")


def _same_label_columns(seed: int = 0):
    """Columns ``mask ⊙ (A δ)`` of samples that share a label (nearly the same ``δ``)."""
    g = torch.Generator().manual_seed(seed)
    m, k = 300, 10
    A = torch.randn(m, k, generator=g, dtype=torch.float64)
    delta = torch.full((3, k), 0.1, dtype=torch.float64)
    delta[:, 3] -= 1.0
    delta += 1e-3 * torch.randn(3, k, generator=g, dtype=torch.float64)      # softmax ≈ uniform
    masks = torch.rand(3, m, generator=g) > 0.5
    return A, masks * (delta @ A.T)


def test_the_span_test_keeps_true_columns_and_refuses_same_label_combinations():
    A, cols = _same_label_columns()
    mixed = cols[0] - cols[1]                 # ≈ 0 (1e-3) where both fire, exactly 0 where neither does
    near_zero = (mixed.abs() < 1e-2 * mixed.abs().max()).sum()
    assert near_zero > 0.4 * cols.shape[1]    # as sparse as a true column at a loose zero tolerance
    span = OutputSpan(A, zero=1e-2, threshold=1e-3)
    assert span(cols).all()
    assert not span(mixed[None]).any()
    assert span.residuals(mixed[None]).item() > 0.1


def test_natural_images_b16_are_recovered_exactly(natural32):
    """Issue 19: natural32 b=32 and b=64 gave PSNR ≈ 12 dB with nothing peeled; b=16 width 200
    found 141 directions, most of them same-label combinations, and no exact batch in 60 s."""
    truth = sample_batch(natural32, 16, seed=0, label_mode="random")
    model = build_model("mlp", shape=natural32.shape, num_classes=10, seed=0, widths=(200,))
    rec = Spear(labels="none", max_seconds=60, seed=0).run(
        model, fedsgd_update(model, truth.inputs, truth.labels), shape=natural32.shape)
    assert rec.info["output_span_test"] and rec.info["from_structure"] > 0
    assert rec.info["complete"] and rec.info["stopped"] == "verified"
    assert evaluate(rec, truth)["exact_fraction"] == 1.0


def test_deadline_keep_moves_the_search_end_never_later():
    now = [100.0]
    d = Deadline(20.0, start=100.0, clock=lambda: now[0])     # 3 % reserve: search ends at 119.4
    assert d.search_end == pytest.approx(119.4)
    d.keep(5.0)
    assert d.search_end == pytest.approx(115.0) and d.reserved == 5.0
    d.keep(1.0)                                               # a smaller estimate changes nothing
    assert d.search_end == pytest.approx(115.0)
    now[0] = 114.9
    assert not d.spent() and d.part(0.5).search_end == pytest.approx(114.95)
    now[0] = 115.0
    assert d.spent() and not Deadline(None, clock=lambda: now[0]).spent()


def test_the_budget_keeps_twice_the_measured_finishing_cost(digits, monkeypatch):
    """A finishing pass said to cost 5 s leaves nothing of a 10 s budget to the search; the
    same batch is recovered when the measured cost is used."""
    truth = sample_batch(digits, 8, seed=1)
    model = build_model("mlp", shape=digits.shape, num_classes=10, seed=1, widths=(150,))
    update = fedsgd_update(model, truth.inputs, truth.labels)
    rec = Spear(labels="none", max_seconds=10, seed=0).run(model, update, shape=digits.shape)
    assert rec.info["complete"] and 0 < rec.info["finish_reserve"] < 5
    monkeypatch.setattr(spear_attack, "trial_cost", lambda prob, tolerance=None: 5.0)
    rec = Spear(labels="none", max_seconds=10, seed=0).run(model, update, shape=digits.shape)
    assert rec.info["finish_reserve"] == pytest.approx(10.0)
    assert not rec.info["complete"] and rec.info["directions_found"] < 8
    assert evaluate(rec, GroundTruth(truth.inputs, truth.labels))["exact_fraction"] < 1.0
