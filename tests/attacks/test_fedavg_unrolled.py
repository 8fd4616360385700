"""fedavg-unrolled: differentiable simulation of the client's local SGD (issue 5)."""

from __future__ import annotations

import pytest
import torch

from gradleak.attacks.fedavg_unrolled import FedAvgUnrolled, local_schedule, simulate_delta
from gradleak.core.errors import ConfigError, NotApplicableError
from gradleak.core.registry import create_attack
from gradleak.core.types import LocalTraining
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.models import build_model

SHAPE = (1, 8, 8)


def test_schedule_covers_every_example_each_epoch():
    batches = local_schedule(5, LocalTraining(lr=0.1, epochs=3, batch_size=2), seed=0)
    assert len(batches) == 9
    for e in range(3):
        assert sorted(torch.cat(batches[3 * e:3 * e + 3]).tolist()) == [0, 1, 2, 3, 4]
    assert len(local_schedule(4, LocalTraining(lr=0.1, steps=7, batch_size=4), 0)) == 7


def test_simulation_reproduces_the_clients_delta_on_the_true_data(digits):
    model = build_model("convnet", shape=SHAPE, num_classes=10, seed=0).eval()
    x, y = digits.inputs[:4], digits.labels[:4]
    local = LocalTraining(lr=0.1, steps=3)            # full-batch steps: order is irrelevant
    update = fedavg_update(model, x, y, local)
    delta = simulate_delta(model, x, y, local, local_schedule(4, local, 0))
    for name, tensor in update.tensors.items():
        assert torch.allclose(delta[name], tensor, atol=1e-5), name


def test_simulation_gradcheck_float64():
    model = build_model("mlp", shape=(1, 2, 2), num_classes=3, seed=0, widths=(4,)).double()
    y = torch.tensor([0, 2])
    local = LocalTraining(lr=0.5, steps=2, batch_size=1)
    batches = local_schedule(2, local, 0)

    def fn(x):
        return simulate_delta(model, x, y, local, batches)["2.weight"]

    x = torch.rand(2, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))


def test_needs_a_weight_delta(digits):
    model = build_model("convnet", shape=SHAPE, num_classes=10, seed=0).eval()
    update = fedsgd_update(model, digits.inputs[:2], torch.tensor([1, 2]))
    with pytest.raises(NotApplicableError, match="weight_delta"):
        create_attack("fedavg-unrolled", steps=2).run(model, update, shape=SHAPE)


def test_bad_settings_raise_config_error():
    with pytest.raises(ConfigError, match="restarts"):
        FedAvgUnrolled(restarts=0)


@pytest.mark.slow
def test_smoke_batched_restarts_and_loss_decreases(digits):
    model = build_model("convnet", shape=SHAPE, num_classes=10, seed=0).eval()
    x, y = digits.inputs[:4], torch.tensor([1, 1, 3, 4])
    update = fedavg_update(model, x, y, LocalTraining(lr=0.1, epochs=2, batch_size=2))
    rec = FedAvgUnrolled(steps=10, restarts=2).run(model, update, shape=SHAPE)
    assert rec.inputs.shape == (4, *SHAPE) and sorted(rec.labels.tolist()) == [1, 1, 3, 4]
    assert rec.info["simulated_steps"] == 4
    assert rec.loss_history[-1] < rec.loss_history[0]
