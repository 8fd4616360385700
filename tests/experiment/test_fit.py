"""The fit: how well a reconstruction explains the update, the same way for every attack."""

from __future__ import annotations

import pytest
import torch

from gradleak.core.types import LocalTraining, Reconstruction
from gradleak.defenses.adaptive import adaptive_transform
from gradleak.defenses.base import build_defenses
from gradleak.experiment.fit import POOR_COSINE, fit_report, fit_warning, gradient_distances
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.models import build_model


@pytest.fixture
def batch(digits):
    return digits.inputs[:4], digits.labels[:4]


def test_truth_fits_exactly_and_the_wrong_weights_do_not(batch):
    x, y = batch
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    update = fedsgd_update(model, x, y)
    good = fit_report(model, update, Reconstruction(x, y))
    assert good["cosine_distance"] < 1e-6 and good["relative_l2"] < 1e-3 and not good["poor"]
    other = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=1)   # not the client's weights
    bad = fit_report(other, update, Reconstruction(x, y))
    assert bad["cosine_distance"] > POOR_COSINE and bad["poor"]
    warning = fit_warning(bad, update, other, labels_from="lsq")
    assert "weights are not the ones the client trained from" in warning and "--checkpoint" in warning
    assert "restored by 'lsq'" in warning and "local-training" not in warning
    assert fit_warning(good, update, model) is None


def test_wrong_labels_fit_worse_than_right_ones(batch):
    x, y = batch
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    update = fedsgd_update(model, x, y)
    right = fit_report(model, update, Reconstruction(x, y))["cosine_distance"]
    wrong = fit_report(model, update, Reconstruction(x, (y + 1) % 10))["cosine_distance"]
    assert wrong > 100 * max(right, 1e-9)


def test_fedavg_delta_is_recomputed_with_the_local_training(batch):
    x, y = batch
    model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0, widths=32)
    local = LocalTraining(lr=0.1, epochs=3)
    update = fedavg_update(model, x, y, local)
    assert fit_report(model, update, Reconstruction(x, y))["cosine_distance"] < 1e-6
    wrong_lr = fedavg_update(model, x, y, LocalTraining(lr=0.5, epochs=3))
    mismatched = update.with_tensors(wrong_lr.tensors)
    fit = fit_report(model, mismatched, Reconstruction(x, y))
    assert fit["relative_l2"] > 0.5
    assert "local-training settings" in fit_warning({**fit, "poor": True}, update, model)


def test_adaptive_transform_is_applied_to_the_recomputed_gradient(batch):
    x, y = batch
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    (prune,) = build_defenses(["prune:ratio=0.9"], seed=0)
    update = prune(fedsgd_update(model, x, y), model=model)
    plain = fit_report(model, update, Reconstruction(x, y))
    adaptive = fit_report(model, update, Reconstruction(x, y), transform=adaptive_transform(model, update))
    assert adaptive["cosine_distance"] < 1e-6 < plain["cosine_distance"]
    assert "prune" in fit_warning({**plain, "poor": True}, update, model)


def test_exact_attacks_report_a_label_free_residual(batch):
    x, y = batch
    model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0, widths=32)
    update = fedsgd_update(model, x, y)
    exact = fit_report(model, update, Reconstruction(x, None), exact=True)
    assert exact["residual"] < 1e-6 and exact["cosine_distance"] is None and not exact["poor"]
    noise = fit_report(model, update, Reconstruction(torch.rand_like(x), None), exact=True)
    assert noise["residual"] > 0.1 and noise["poor"]


def test_distances_are_scale_aware_and_direction_aware():
    g = {"w": torch.tensor([3.0, 4.0])}
    assert gradient_distances({"w": torch.tensor([3.0, 4.0])}, g, ["w"]) == (0.0, 0.0)
    cos, rel = gradient_distances({"w": torch.tensor([-3.0, -4.0])}, g, ["w"])
    assert cos == pytest.approx(2.0) and rel == pytest.approx(2.0)


def test_an_all_zero_update_is_named_as_such(batch):
    x, y = batch
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    update = fedsgd_update(model, x, y)
    zero = update.with_tensors({k: torch.zeros_like(v) for k, v in update.tensors.items()})
    fit = fit_report(model, zero, Reconstruction(x, y))
    assert fit["poor"] and fit["cosine_distance"] == 1.0
    assert fit_warning(fit, zero, model).startswith("the update is all zeros")
