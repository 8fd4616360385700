"""Embedded datasets, batch sampling, the model zoo and the FL client."""

from __future__ import annotations

import pytest
import torch

from gradleak.core.errors import ConfigError
from gradleak.core.types import LocalTraining
from gradleak.data import sample_batch
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.models import build_model, last_linear


def test_embedded_datasets_shapes(mnist, digits):
    assert mnist.shape == (1, 28, 28) and len(mnist) == 5000 and mnist.num_classes == 10
    assert digits.shape == (1, 8, 8) and len(digits) == 1797
    for ds in (mnist, digits):
        assert 0.0 <= float(ds.inputs.min()) and float(ds.inputs.max()) <= 1.0
        assert ds.inputs.dtype == torch.float32 and ds.labels.dtype == torch.int64


def test_sampling_is_seeded_and_modes(digits):
    a = sample_batch(digits, 8, seed=3)
    b = sample_batch(digits, 8, seed=3)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, sample_batch(digits, 8, seed=4).inputs)
    assert len(set(sample_batch(digits, 10, seed=0, label_mode="distinct").labels.tolist())) == 10
    assert len(set(sample_batch(digits, 6, seed=0, label_mode="same").labels.tolist())) == 1


@pytest.mark.parametrize(("size", "mode", "match"), [
    (0, "random", ">= 1"), (5000, "random", "larger than"), (11, "distinct", "distinct labels"),
    (2, "weird", "label mode"),
])
def test_sampling_rejects_bad_input(digits, size, mode, match):
    with pytest.raises(ConfigError, match=match):
        sample_batch(digits, size, seed=0, label_mode=mode)


@pytest.mark.parametrize("name", ["mlp", "lenet", "convnet"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_models_build_seeded(name, shape):
    m1 = build_model(name, shape=shape, num_classes=7, seed=1)
    m2 = build_model(name, shape=shape, num_classes=7, seed=1)
    m3 = build_model(name, shape=shape, num_classes=7, seed=2)
    assert m1(torch.rand(2, *shape)).shape == (2, 7)
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(m1.parameters(), m3.parameters()))
    assert last_linear(m1)[1].out_features == 7


def test_build_model_rejects_bad_options():
    with pytest.raises(ConfigError, match="no option"):
        build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0, depth=3)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_model("mlp", shape=(1, 8, 8), num_classes=1, seed=0)


def test_fedsgd_matches_autograd_and_leaves_model_untouched():
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    before = [p.clone() for p in model.parameters()]
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([1, 2, 1])
    update = fedsgd_update(model, x, y)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for (name, _), g in zip(model.named_parameters(), grads):
        assert torch.allclose(update.tensors[name], g, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert update.labels is None and fedsgd_update(model, x, y, labels_leak=True).labels is not None


def test_fedavg_one_full_batch_step_equals_lr_times_gradient():
    model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    g = fedsgd_update(model, x, y)
    d = fedavg_update(model, x, y, LocalTraining(lr=0.05, epochs=1))
    for name in g.tensors:
        assert torch.allclose(d.tensors[name], -0.05 * g.tensors[name], atol=1e-6)


def test_fedavg_more_steps_move_further():
    model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    one = fedavg_update(model, x, y, LocalTraining(lr=0.1, epochs=1, batch_size=8))
    four = fedavg_update(model, x, y, LocalTraining(lr=0.1, epochs=2, batch_size=4))
    assert four.local_training.num_steps(8) == 4

    def norm(u):
        return sum(float(t.pow(2).sum()) for t in u.tensors.values())

    assert norm(four) > norm(one)


def test_mlp_single_width_means_one_hidden_layer():
    model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0, widths=32)
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [32, 10]
