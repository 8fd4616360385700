"""Batch label restoration (issue 5): idlg, yin, llg, geng, bias, ilrg, dimitrov, lsq."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradleak.core.errors import NotApplicableError
from gradleak.core.registry import LABEL_METHODS
from gradleak.core.types import LocalTraining
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.labels.counts import (
    counts_to_labels,
    dummy_statistics,
    round_counts,
)
from gradleak.labels.resolve import DEFAULT_BATCH_METHODS, resolve_labels
from gradleak.labels.yin_llg import llg_counts
from gradleak.metrics import label_accuracy
from gradleak.models import Normalize, build_model

BATCH_METHODS = ["llg", "geng", "bias", "ilrg", "dimitrov", "lsq"]
SHAPE = (1, 8, 8)


def _update(model_name: str, labels: list[int], seed: int = 0, digits=None):
    model = build_model(model_name, shape=SHAPE, num_classes=10, seed=seed).eval()
    y = torch.tensor(labels)
    if digits is not None:
        idx = torch.randperm(len(digits), generator=torch.Generator().manual_seed(seed))[:len(y)]
        x = digits.inputs[idx]
    else:
        x = torch.rand(len(y), *SHAPE, generator=torch.Generator().manual_seed(seed))
    return model, fedsgd_update(model, x, y), y


def test_all_methods_registered():
    for name in ["idlg", "yin", *BATCH_METHODS]:
        assert name in LABEL_METHODS


@pytest.mark.parametrize("method", BATCH_METHODS)
def test_methods_return_sorted_labels_of_batch_size(method):
    model, update, y = _update("convnet", [3, 3, 1, 9, 9, 9])
    out = LABEL_METHODS.get(method)(model, update, shape=SHAPE)
    assert out.dtype == torch.int64 and out.shape == (6,)
    assert out.tolist() == sorted(out.tolist())


@pytest.mark.parametrize("method", ["bias", "ilrg", "lsq"])
def test_exact_multisets_with_duplicates_on_untrained_relu_net(method, digits):
    gen = torch.Generator().manual_seed(1)
    for seed in range(3):
        labels = torch.randint(0, 10, (16,), generator=gen).tolist()
        model, update, y = _update("convnet", labels, seed=seed, digits=digits)
        assert LABEL_METHODS.get(method)(model, update, shape=SHAPE).tolist() == sorted(labels), seed


def test_geng_counts_are_close_with_duplicates(digits):
    gen = torch.Generator().manual_seed(1)
    accs = []
    for seed in range(3):
        labels = torch.randint(0, 10, (16,), generator=gen)
        model, update, y = _update("convnet", labels.tolist(), seed=seed, digits=digits)
        accs.append(label_accuracy(LABEL_METHODS.get("geng")(model, update, shape=SHAPE), labels))
    assert sum(accs) / 3 >= 0.9 and max(accs) == 1.0, accs


def test_yin_restores_distinct_labels():
    model, update, y = _update("convnet", [7, 2, 5])
    assert LABEL_METHODS.get("yin")(model, update, shape=SHAPE).tolist() == [2, 5, 7]


def test_yin_rejects_more_examples_than_classes():
    model, update, _ = _update("convnet", [1] * 12)
    with pytest.raises(NotApplicableError, match="count method"):
        LABEL_METHODS.get("yin")(model, update, shape=SHAPE)


def test_idlg_rejects_batches_and_names_batch_methods():
    model, update, _ = _update("convnet", [1, 2])
    with pytest.raises(NotApplicableError, match="geng"):
        LABEL_METHODS.get("idlg")(model, update, shape=SHAPE)


def test_no_linear_layer_is_not_applicable():
    model = nn.Sequential(Normalize(), nn.Conv2d(1, 10, 8), nn.Flatten())
    x, y = torch.rand(2, *SHAPE), torch.tensor([1, 2])
    update = fedsgd_update(model, x, y)
    for method in BATCH_METHODS:
        with pytest.raises(NotApplicableError, match="no nn.Linear"):
            LABEL_METHODS.get(method)(model, update, shape=SHAPE)


def test_negative_features_break_sign_methods_but_not_bias():
    torch.manual_seed(0)
    model = nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    x, y = torch.rand(4, *SHAPE), torch.tensor([1, 1, 2, 3])
    update = fedsgd_update(model, x, y)
    for method in ["geng", "llg", "yin", "dimitrov"]:
        with pytest.raises(NotApplicableError, match="non-negative") as err:
            LABEL_METHODS.get(method)(model, update, shape=SHAPE)
        assert "bias" in str(err.value) or "lsq" in str(err.value)
    one = fedsgd_update(model, x[:1], y[:1])
    with pytest.raises(NotApplicableError, match="non-negative.*lsq"):
        LABEL_METHODS.get("idlg")(model, one, shape=SHAPE)
    assert LABEL_METHODS.get("bias")(model, update, shape=SHAPE).shape == (4,)


def test_layer_after_last_linear_is_not_applicable():
    model = nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(64, 10), nn.Tanh())
    update = fedsgd_update(model, torch.rand(2, *SHAPE), torch.tensor([0, 1]))
    with pytest.raises(NotApplicableError, match="not the last nn.Linear"):
        LABEL_METHODS.get("lsq")(model, update, shape=SHAPE)


def test_bias_methods_need_a_bias():
    model = nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                          nn.Linear(32, 10, bias=False))
    update = fedsgd_update(model, torch.rand(2, *SHAPE), torch.tensor([0, 1]))
    for method in ["bias", "ilrg", "lsq"]:
        with pytest.raises(NotApplicableError, match="bias"):
            LABEL_METHODS.get(method)(model, update, shape=SHAPE)
    assert LABEL_METHODS.get("geng")(model, update, shape=SHAPE).shape == (2,)


def test_round_counts_sum_and_sign():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        raw = torch.randn(10, generator=gen) * 5 + 3
        total = int(torch.randint(1, 40, (1,), generator=gen))
        counts = round_counts(raw, total)
        assert int(counts.sum()) == total and bool((counts >= 0).all())
    assert round_counts(torch.tensor([1.6, 0.7, -0.2, 1.9]), 4).tolist() == [1, 1, 0, 2]
    assert counts_to_labels(torch.tensor([2, 0, 1])).tolist() == [0, 0, 2]


def test_llg_uses_the_official_one_plus_one_over_c_factor():
    """Row sums (0, -0.7, 0.5, -1.3), K = 4, C = 4. With the official code's impact
    m = (-2.0 / 4)·(1 + 1/4) = -0.625 the corrected sums after the two present classes are
    -0.075 (class 1) and -0.675 (class 3): class 3, then class 1 (-0.075 < -0.05). Without the
    factor (m = -0.5) they are -0.2 and -0.8, and class 3 would be taken twice more."""
    assert llg_counts(torch.tensor([0.0, -0.7, 0.5, -1.3]), 4).tolist() == [1, 1, 3, 3]


def test_llg_subtract_and_reselect():
    assert llg_counts(torch.tensor([-0.3, 0.1, -0.1, 0.3]), 4).tolist() == [0, 0, 0, 2]
    # more negative rows than examples: keep the most negative
    assert llg_counts(torch.tensor([-0.3, -0.1, -0.2, 0.6]), 2).tolist() == [0, 2]


@pytest.mark.slow
def test_fedavg_counts_stay_accurate(digits):
    gen = torch.Generator().manual_seed(3)
    local = LocalTraining(lr=0.01, epochs=1, batch_size=8)
    for method in ["geng", "dimitrov", "lsq"]:
        accs = []
        for seed in range(2):
            model = build_model("convnet", shape=SHAPE, num_classes=10, seed=seed).eval()
            y = torch.randint(0, 10, (24,), generator=gen)
            update = fedavg_update(model, digits.inputs[:24], y, local, seed=seed)
            accs.append(label_accuracy(LABEL_METHODS.get(method)(model, update, shape=SHAPE), y))
        assert sum(accs) / len(accs) >= 0.9, (method, accs)


def test_resolve_labels_restore_uses_default_and_shape():
    model, update, y = _update("convnet", [4, 4, 8])
    labels, how = resolve_labels(model, update, "restore", shape=SHAPE)
    assert how == DEFAULT_BATCH_METHODS[0] and labels.tolist() == [4, 4, 8]
    one_model, one, _ = _update("convnet", [6])
    labels, how = resolve_labels(one_model, one, "restore", shape=SHAPE)
    assert (labels.tolist(), how) == ([6], "idlg")


def test_resolve_labels_falls_back_when_default_cannot_apply():
    model = nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                          nn.Linear(32, 10, bias=False))
    update = fedsgd_update(model, torch.rand(3, *SHAPE), torch.tensor([0, 0, 5]))
    labels, how = resolve_labels(model, update, "restore", shape=SHAPE)
    assert how == "geng" and labels.shape == (3,)


def test_shape_is_required_and_dummy_statistics():
    model, update, _ = _update("lenet", [1, 2])
    with pytest.raises(NotApplicableError, match="input shape"):
        LABEL_METHODS.get("geng")(model, update, shape=None)
    stats = dummy_statistics(model, SHAPE, samples=32)
    assert stats.p_mean.shape == (10,) and abs(float(stats.p_mean.sum()) - 1) < 1e-6
    assert stats.o_hat > 0 and stats.feature_min >= 0 and stats.output_is_linear
    # the statistics are of the last linear layer: with its weight zeroed every dummy input gets
    # softmax(bias); its inputs here are tanh features, so their minimum is negative
    torch.manual_seed(0)
    head = nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    bias = torch.linspace(-2.0, 2.0, 10)
    with torch.no_grad():
        head[4].weight.zero_()
        head[4].bias.copy_(bias)
    tanh_stats = dummy_statistics(head, SHAPE, samples=32)
    assert torch.allclose(tanh_stats.p_mean, torch.softmax(bias.double(), 0), atol=1e-12)
    assert tanh_stats.feature_min < 0 and tanh_stats.output_is_linear
    after = nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(64, 10), nn.Tanh())  # a layer after the head
    assert not dummy_statistics(after, SHAPE, samples=32).output_is_linear
