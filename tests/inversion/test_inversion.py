"""Shared attack pieces: distances, priors, trial gradients, loops (with gradcheck in float64)."""

from __future__ import annotations

import torch

from gradleak.core.types import LocalTraining
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.inversion.gradients import observed_gradient, trial_gradients
from gradleak.inversion.losses import cosine_distance, l2_distance
from gradleak.inversion.optimize import best_restart, optimise_inputs
from gradleak.inversion.priors import total_variation
from gradleak.inversion.schedules import step_decay_milestones
from gradleak.labels.idlg import restore_idlg
from gradleak.models import build_model


def test_distances_values():
    g = [torch.tensor([1.0, 0.0]), torch.tensor([[0.0, 2.0]])]
    same = [t[None].clone() for t in g]
    opposite = [-t[None] for t in g]
    assert torch.allclose(cosine_distance(same, g), torch.zeros(1), atol=1e-7)
    assert torch.allclose(cosine_distance(opposite, g), torch.full((1,), 2.0))
    assert torch.allclose(l2_distance(opposite, g), torch.tensor([20.0]))
    assert torch.allclose(l2_distance(opposite, g, mean_over_tensors=True), torch.tensor([10.0]))


def test_distances_and_tv_gradcheck():
    gen = torch.Generator().manual_seed(0)
    target = [torch.randn(3, dtype=torch.float64, generator=gen), torch.randn(2, 2, dtype=torch.float64,
                                                                             generator=gen)]
    a = torch.randn(2, 3, dtype=torch.float64, requires_grad=True, generator=gen)
    b = torch.randn(2, 2, 2, dtype=torch.float64, requires_grad=True, generator=gen)
    assert torch.autograd.gradcheck(lambda a, b: cosine_distance([a, b], target), (a, b))
    assert torch.autograd.gradcheck(lambda a, b: l2_distance([a, b], target), (a, b))
    x = torch.rand(2, 1, 1, 4, 4, dtype=torch.float64, requires_grad=True, generator=gen)
    assert torch.autograd.gradcheck(total_variation, (x,))


def test_tv_zero_for_constant_and_positive_otherwise():
    assert float(total_variation(torch.full((1, 1, 1, 5, 5), 0.3))[0]) == 0.0
    checker = (torch.arange(16).reshape(4, 4) % 2).float()[None, None, None]
    assert float(total_variation(checker)[0]) > 0.4


def test_batched_trial_gradients_equal_per_restart_gradients():
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    x = torch.rand(3, 2, 1, 8, 8)
    y = torch.randint(0, 10, (3, 2))
    batched = trial_gradients(model, x, y)
    for r in range(3):
        single = trial_gradients(model, x[r:r + 1], y[r:r + 1])
        for a, b in zip(batched, single):
            assert torch.allclose(a[r], b[0], atol=1e-5)


def test_observed_gradient_from_one_step_delta_is_exact():
    model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([4, 5])
    grads = observed_gradient(model, fedsgd_update(model, x, y))
    from_delta = observed_gradient(model, fedavg_update(model, x, y, LocalTraining(lr=0.01)))
    for a, b in zip(grads, from_delta):
        assert torch.allclose(a, b, atol=1e-4)


def test_idlg_label_on_weight_delta():
    model = build_model("lenet", shape=(1, 8, 8), num_classes=10, seed=1)
    update = fedavg_update(model, torch.rand(1, 1, 8, 8), torch.tensor([9]), LocalTraining(lr=0.1))
    assert restore_idlg(model, update, shape=(1, 8, 8)).tolist() == [9]


def test_optimise_inputs_keeps_box_and_picks_best():
    # the target lies partly outside the box: unconstrained steps would leave [0, 1]
    target = torch.tensor([-0.5, 0.25, 1.5]).repeat(3).reshape(1, 1, 1, 3, 3)

    def loss(x):
        return ((x - target) ** 2).flatten(1).sum(1)

    x0 = torch.stack([torch.zeros(1, 1, 3, 3), torch.ones(1, 1, 3, 3)])
    out = optimise_inputs(loss, x0, steps=10, lr=0.5, signed=True, decay=False, box=(0.0, 1.0))
    x, hist = out.last, out.history
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and len(hist) == 2
    below, above = (target < 0).expand_as(x), (target > 1).expand_as(x)
    assert (x[below] == 0.0).all() and (x[above] == 1.0).all()  # pinned to the box where the target is outside
    free = optimise_inputs(loss, x0, steps=10, lr=0.5, signed=True, decay=False, box=None).last
    assert float(free.min()) < 0.0 and float(free.max()) > 1.0  # without the box the same steps leave it
    idx, value = best_restart(loss, torch.stack([torch.ones(1, 1, 3, 3), target[0]]))
    assert idx == 1 and value == 0.0
    assert step_decay_milestones(8) == [3, 5, 7]
