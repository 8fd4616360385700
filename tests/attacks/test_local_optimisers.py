"""The client's real local training (issue 18): momentum, weight decay, FedProx, Adam.

The client runs ``torch.optim`` (``gradleak.fl.local_sgd``); the attacker's unrolled simulation
(``simulate_delta``) is an independent functional re-implementation. At the true inputs and the
client's own mini-batch order they must give the same weight delta to float rounding.
"""

from __future__ import annotations

import pytest
import torch

from gradleak.attacks.fedavg_unrolled import simulate_delta
from gradleak.core.errors import ConfigError, NotApplicableError
from gradleak.core.registry import create_attack
from gradleak.core.types import ClientUpdate, GroundTruth, LocalTraining
from gradleak.fl import fedavg_update
from gradleak.inversion.gradients import observed_gradient
from gradleak.models import build_model

SHAPE = (1, 8, 8)
OPTIMISERS = {
    "plain SGD": LocalTraining(lr=0.1, epochs=2, batch_size=2),
    "momentum SGD + weight decay": LocalTraining(lr=0.1, epochs=2, batch_size=2, momentum=0.9, weight_decay=5e-3),
    "Nesterov SGD": LocalTraining(lr=0.05, epochs=2, batch_size=2, momentum=0.9, nesterov=True),
    "FedProx": LocalTraining(lr=0.1, epochs=2, batch_size=2, prox_mu=0.5),
    "FedProx + momentum": LocalTraining(lr=0.1, epochs=2, batch_size=2, prox_mu=0.5, momentum=0.5),
    "Adam": LocalTraining(lr=1e-3, epochs=2, batch_size=2, optimizer="adam"),
    "AdamW": LocalTraining(lr=1e-3, epochs=2, batch_size=2, optimizer="adamw", weight_decay=1e-2),
}


def clients_batches(n: int, local: LocalTraining, seed: int) -> list[torch.Tensor]:
    """The mini-batches ``local_sgd`` draws with ``seed`` (its shuffles, replayed)."""
    gen, bs, total = torch.Generator().manual_seed(seed), local.batch_size or n, local.num_steps(n)
    batches: list[torch.Tensor] = []
    while len(batches) < total:
        order = torch.randperm(n, generator=gen)
        batches += [order[s:s + bs] for s in range(0, n, bs)][: total - len(batches)]
    return batches


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_unrolled_simulation_reproduces_each_clients_delta(name, dtype, digits):
    """float64: equal to 1e-12 of the delta's size; float32: to a few ulps of the weights."""
    local = OPTIMISERS[name]
    model = build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=(32,)).eval().to(dtype)
    x, y = digits.inputs[:4].to(dtype), digits.labels[:4]
    update = fedavg_update(model, x, y, local, seed=7)
    simulated = simulate_delta(model, x, y, local, clients_batches(4, local, 7))
    for key, param in model.named_parameters():
        tensor = update.tensors[key]
        if dtype == torch.float64:
            tol = 1e-12 * tensor.abs().max().item()
        else:
            tol = 4 * torch.finfo(dtype).eps * param.abs().max().item()
        torch.testing.assert_close(simulated[key], tensor, rtol=0, atol=tol, msg=key)


@pytest.mark.parametrize("name", ["momentum SGD + weight decay", "FedProx + momentum", "Adam"])
def test_plain_sgd_simulation_does_not_match_a_richer_client(name, digits):
    """Modelling the optimiser matters: plain SGD at the same lr misses the delta by far more than rounding."""
    local = OPTIMISERS[name]
    model = build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=(32,)).eval()
    x, y = digits.inputs[:4], digits.labels[:4]
    update = fedavg_update(model, x, y, local, seed=7)
    plain = LocalTraining(lr=local.lr, epochs=local.epochs, batch_size=local.batch_size)
    simulated = simulate_delta(model, x, y, plain, clients_batches(4, plain, 7))
    err = max((simulated[k] - t).abs().max().item() / t.abs().max().item() for k, t in update.tensors.items())
    assert err > 0.05


def test_unrolled_attack_loss_is_zero_at_the_truth_for_fedprox_and_momentum(digits):
    """The attack's own objective (cosine between simulated and observed deltas) vanishes at the truth."""
    from gradleak.inversion.losses import DISTANCES

    model = build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=(32,)).eval()
    x, y = digits.inputs[:4], digits.labels[:4]
    for name in ("FedProx", "momentum SGD + weight decay"):
        local = OPTIMISERS[name]
        update = fedavg_update(model, x, y, local, seed=7)
        names = [n for n, _ in model.named_parameters()]
        simulated = simulate_delta(model, x, y, local, clients_batches(4, local, 7))
        loss = DISTANCES["cosine"]([simulated[n][None] for n in names], [update.tensors[n] for n in names])
        assert float(loss) < 1e-6, name


@pytest.mark.parametrize("local", [LocalTraining(lr=0.1, momentum=0.9, weight_decay=0.01),
                                   LocalTraining(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
                                   LocalTraining(lr=0.1, prox_mu=1.0)])
def test_one_step_delta_converts_to_the_exact_gradient(local, digits):
    model = build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=(32,)).eval()
    x, y = digits.inputs[:4], digits.labels[:4]
    delta = fedavg_update(model, x, y, local)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    truth = torch.autograd.grad(loss, list(model.parameters()))
    for got, want in zip(observed_gradient(model, delta), truth, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_spear_is_exact_on_a_momentum_weight_decay_client(digits):
    model = build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=(100,)).eval()
    x = digits.inputs[:4]
    local = LocalTraining(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    update = fedavg_update(model, x, digits.labels[:4], local)
    from gradleak.metrics import evaluate

    rec = create_attack("spear", labels="none").run(model, update, shape=SHAPE)
    assert evaluate(rec, GroundTruth(x, digits.labels[:4]))["exact_fraction"] == 1.0


def test_single_step_attacks_refuse_an_adam_delta_with_the_reason(digits):
    model = build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=(32,)).eval()
    update = fedavg_update(model, digits.inputs[:2], digits.labels[:2], OPTIMISERS["Adam"])
    for name in ("ig", "spear"):
        problems = create_attack(name).check(model, update)
        assert any("sign of each gradient" in str(p) for p in problems), name
    with pytest.raises(NotApplicableError, match="fedavg-unrolled"):
        observed_gradient(model, update)
    unrolled = create_attack("fedavg-unrolled", steps=1)
    assert any("cannot be restored" in str(p) for p in unrolled.check(model, update))
    with_labels = ClientUpdate(update.kind, update.tensors, 2, update.local_training, labels=digits.labels[:2])
    assert unrolled.check(model, with_labels) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "rmsprop"}, "optimizer must be"),
    ({"momentum": 1.0}, "momentum must be in"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum applies to optimizer 'sgd'"),
    ({"nesterov": True}, "nesterov needs"),
    ({"weight_decay": -1.0}, "weight_decay must be"),
    ({"prox_mu": float("inf")}, "prox_mu must be"),
    ({"betas": (0.9, 1.0)}, "betas must be"),
    ({"eps": 0.0}, "eps must be"),
])
def test_bad_optimiser_settings_are_one_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LocalTraining(lr=0.1, **kwargs)


def test_defaults_are_plain_sgd_as_before():
    local = LocalTraining(0.1, 2, 4)
    assert (local.optimizer, local.momentum, local.weight_decay, local.prox_mu) == ("sgd", 0.0, 0.0, 0.0)
    assert LocalTraining(0.1, betas=[0.8, 0.9]).betas == (0.8, 0.9)  # JSON lists read back


def test_adam_simulation_has_finite_gradients_where_a_gradient_entry_is_exactly_zero():
    model = build_model("mlp", shape=(1, 2, 2), num_classes=3, seed=0, widths=(4,)).double()
    with torch.no_grad():
        model.get_submodule("2").bias[0] = -100.0  # a dead ReLU unit: its weights' gradients are exactly 0
    local = LocalTraining(lr=0.01, steps=2, optimizer="adam")
    x = torch.rand(2, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    delta = simulate_delta(model, x, torch.tensor([0, 2]), local, [torch.arange(2)] * 2)
    assert (delta["2.weight"][0] == 0).all()
    sum((d * torch.randn_like(d)).sum() for d in delta.values()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
