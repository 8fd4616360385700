"""DLG, iDLG and Inverting Gradients: the papers' claims at toy scale."""

from __future__ import annotations

import pytest
import torch

from gradleak.core.errors import ConfigError, NotApplicableError
from gradleak.core.registry import create_attack
from gradleak.core.types import LocalTraining
from gradleak.data import sample_batch
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.labels.idlg import restore_idlg
from gradleak.metrics import evaluate
from gradleak.models import build_model


@pytest.mark.parametrize("model_name", ["lenet", "convnet"])
def test_idlg_restores_single_label_for_20_of_20_seeds(mnist, model_name):
    hits = 0
    for seed in range(20):
        truth = sample_batch(mnist, 1, seed=seed)
        model = build_model(model_name, shape=mnist.shape, num_classes=10, seed=seed)
        update = fedsgd_update(model, truth.inputs, truth.labels)
        hits += int(restore_idlg(model, update, shape=mnist.shape).item() == truth.labels.item())
    assert hits == 20


def test_dlg_recovers_a_digit_on_lenet(digits):
    truth = sample_batch(digits, 1, seed=1)
    model = build_model("lenet", shape=digits.shape, num_classes=10, seed=1)
    update = fedsgd_update(model, truth.inputs, truth.labels)
    rec = create_attack("dlg", steps=30, seed=0).run(model, update, shape=digits.shape)
    m = evaluate(rec, truth)
    assert m["psnr"] > 25 and m["label_accuracy"] == 1.0


def test_idlg_full_attack_uses_restored_label(digits):
    truth = sample_batch(digits, 1, seed=3)
    model = build_model("lenet", shape=digits.shape, num_classes=10, seed=3)
    update = fedsgd_update(model, truth.inputs, truth.labels)
    rec = create_attack("idlg", steps=30, seed=0).run(model, update, shape=digits.shape)
    assert rec.info["labels_from"] == "idlg"
    assert evaluate(rec, truth)["psnr"] > 25


@pytest.mark.slow
def test_ig_reconstructs_mnist_digit_on_convnet(mnist):
    truth = sample_batch(mnist, 1, seed=0)
    model = build_model("convnet", shape=mnist.shape, num_classes=10, seed=0)
    update = fedsgd_update(model, truth.inputs, truth.labels, labels_leak=True)
    rec = create_attack("ig", steps=300, labels="known").run(model, update, shape=mnist.shape)
    assert evaluate(rec, truth)["psnr"] >= 18


def test_ig_works_from_one_step_fedavg_delta(digits):
    truth = sample_batch(digits, 1, seed=3)
    model = build_model("convnet", shape=digits.shape, num_classes=10, seed=3)
    update = fedavg_update(model, truth.inputs, truth.labels, LocalTraining(lr=0.01))
    rec = create_attack("ig", steps=200, labels="restore").run(model, update, shape=digits.shape)
    m = evaluate(rec, truth)
    assert m["label_accuracy"] == 1.0 and m["psnr"] > 18


def test_ig_keeps_the_lowest_loss_iterate_of_the_best_restart(digits, monkeypatch):
    import gradleak.inversion.matching as matching

    runs = []
    optimise = matching.optimise_inputs

    def spy(loss_fn, x0, **kwargs):  # keep what the loop found and the loss it optimised
        out = optimise(loss_fn, x0, **kwargs)
        runs.append((loss_fn, out))
        return out

    monkeypatch.setattr(matching, "optimise_inputs", spy)
    truth = sample_batch(digits, 2, seed=4)
    model = build_model("convnet", shape=digits.shape, num_classes=10, seed=4)
    update = fedsgd_update(model, truth.inputs, truth.labels, labels_leak=True)
    rec = create_attack("ig", steps=30, restarts=3, labels="known").run(model, update, shape=digits.shape)
    assert rec.inputs.shape == (2, 1, 8, 8)
    (loss_fn, out), = runs
    def score(x):  # at b=2 the loss is (objective, score): TV 0.02 then, from 5/8 of the run, 0.01 (tv_late)
        value = loss_fn(x)  # called after the run: the late weight, the one the best iterate is chosen by
        return (value[1] if isinstance(value, tuple) else value).detach()

    kept = score(out.x)    # each restart's kept iterate, evaluated again
    last = score(out.last)  # each restart's last iterate
    best = rec.info["best_restart"]
    assert last.max() > 1.2 * last.min(), last  # the restarts end apart: which one is kept matters
    assert best == int(kept.argmin()) and rec.info["final_loss"] == pytest.approx(float(kept.min()), rel=1e-5)
    # the kept iterate is at least as good as every iterate the loop evaluated, the last one included
    # (the history's objectives weigh TV at least as much as the score does)
    assert all(float(kept[r]) <= min(out.history[r]) + 1e-6 and kept[r] <= last[r] + 1e-6 for r in range(3))
    assert torch.equal(rec.inputs, out.x[best]) and rec.loss_history == out.history[best]


def test_attacks_are_deterministic(digits):
    truth = sample_batch(digits, 2, seed=5)
    model = build_model("convnet", shape=digits.shape, num_classes=10, seed=5)
    update = fedsgd_update(model, truth.inputs, truth.labels, labels_leak=True)
    a = create_attack("ig", steps=20, seed=9).run(model, update, shape=digits.shape)
    b = create_attack("ig", steps=20, seed=9).run(model, update, shape=digits.shape)
    assert torch.equal(a.inputs, b.inputs) and a.loss_history == b.loss_history


def test_label_restoration_refuses_batches_for_idlg(digits):
    truth = sample_batch(digits, 3, seed=0)
    model = build_model("convnet", shape=digits.shape, num_classes=10, seed=0)
    update = fedsgd_update(model, truth.inputs, truth.labels)
    with pytest.raises(NotApplicableError, match="batch size 1"):
        create_attack("idlg", steps=1, labels="idlg").run(model, update, shape=digits.shape)
    with pytest.raises(ConfigError, match="--labels known needs labels"):
        create_attack("ig", steps=1, labels="known").run(model, update, shape=digits.shape)


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("ig", {"steps": 0}, "steps"), ("ig", {"distance": "manhattan"}, "distance"),
    ("ig", {"tv": -1.0}, "tv"), ("dlg", {"lr": 0.0}, "lr"), ("idlg", {"restarts": 0}, "restarts"),
])
def test_bad_hyper_parameters_rejected(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_attack(name, **kwargs)


def test_mismatched_update_is_refused(digits):
    model = build_model("convnet", shape=digits.shape, num_classes=10, seed=0)
    other = build_model("mlp", shape=digits.shape, num_classes=10, seed=0)
    truth = sample_batch(digits, 1, seed=0)
    update = fedsgd_update(other, truth.inputs, truth.labels)
    from gradleak.core.errors import UpdateMismatchError

    with pytest.raises(UpdateMismatchError, match="does not fit the model"):
        create_attack("ig", steps=1).run(model, update, shape=digits.shape)
