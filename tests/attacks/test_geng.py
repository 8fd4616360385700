"""The geng attack and the BN-statistics prior (issue 5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradleak.attacks.geng import Geng
from gradleak.core.errors import ConfigError
from gradleak.core.registry import create_attack
from gradleak.core.types import GroundTruth, LocalTraining
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.inversion.bn_prior import BNStatisticsPrior, bn_targets
from gradleak.inversion.gradients import observed_gradient
from gradleak.inversion.matching import invert_with_labels
from gradleak.metrics import evaluate
from gradleak.models import Normalize, build_model

SHAPE = (1, 8, 8)


def _bn_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(Normalize(), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 64, 10))


def test_registered_and_smoke_fedsgd(digits):
    model = build_model("convnet", shape=SHAPE, num_classes=10, seed=0).eval()
    x, y = digits.inputs[:3], torch.tensor([4, 4, 1])
    rec = create_attack("geng", steps=5).run(model, fedsgd_update(model, x, y), shape=SHAPE)
    assert rec.inputs.shape == (3, *SHAPE) and sorted(rec.labels.tolist()) == [1, 4, 4]
    assert rec.info["labels_from"] == "geng" and len(rec.loss_history) == 5


def test_fedavg_weights_go_through_average_gradient(digits):
    model = build_model("convnet", shape=SHAPE, num_classes=10, seed=0).eval()
    x, y = digits.inputs[:4], torch.tensor([0, 0, 2, 3])
    update = fedavg_update(model, x, y, LocalTraining(lr=0.01, epochs=1, batch_size=2))
    rec = Geng(steps=3).run(model, update, shape=SHAPE)
    assert rec.inputs.shape == (4, *SHAPE) and sorted(rec.labels.tolist()) == [0, 0, 2, 3]


def test_bad_settings_raise_config_error():
    with pytest.raises(ConfigError, match="steps.*tv"):
        Geng(steps=0, tv=-1)
    with pytest.raises(ConfigError, match="distance"):
        Geng(distance="manhattan")


@pytest.mark.slow
def test_one_swapped_label_hurts_restoration(digits):
    """Geng et al.'s claim at toy scale: with one label wrong, restoration degrades."""
    model = build_model("convnet", shape=SHAPE, num_classes=10, seed=0).eval()
    idx = torch.tensor([0, 1, 2])
    x, y = digits.inputs[idx], digits.labels[idx]
    target = observed_gradient(model, fedsgd_update(model, x, y))
    swapped = y.clone()
    swapped[0] = (y[0] + 1) % 10
    prior = BNStatisticsPrior(model)
    truth = GroundTruth(x, y)
    scores = {}
    for name, labels in [("right", y), ("swapped", swapped)]:
        rec = invert_with_labels(model, target, labels, shape=SHAPE, steps=100, lr=0.1, tv=1e-2,
                                 bn_weight=0.0, bn_prior=prior, restarts=1, distance="cosine",
                                 signed=True, seed=0)
        scores[name] = evaluate(rec, truth)["psnr"]
    assert scores["right"] > scores["swapped"] + 5.0, scores


def test_shared_bn_buffers_give_the_clients_batch_statistics():
    model = _bn_model()
    x = torch.rand(6, *SHAPE)
    update = fedsgd_update(model, x, torch.arange(6), mode="train", share_buffers=True)
    targets, source = bn_targets(model, update)
    assert source.startswith("client batch statistics")
    feats = model[1](model[0](x))
    mean, var = targets[0]
    assert torch.allclose(mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(var, feats.var(dim=(0, 2, 3), unbiased=True), atol=1e-4)
    prior = BNStatisticsPrior(model, update)
    with torch.no_grad():
        own, other = float(prior(x[None])[0]), float(prior(torch.rand(1, 6, *SHAPE))[0])
    assert prior.active and own < 1e-3 < other


def test_untrained_bn_statistics_switch_the_prior_off():
    model = _bn_model().eval()
    update = fedsgd_update(model, torch.rand(2, *SHAPE), torch.tensor([1, 2]))
    prior = BNStatisticsPrior(model, update)
    assert not prior.active and prior(torch.rand(3, 2, *SHAPE)).tolist() == [0.0, 0.0, 0.0]


def test_bn_prior_gradcheck_float64():
    torch.manual_seed(0)
    model = nn.Sequential(Normalize(), nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(2 * 16, 3)).double()
    bn = model[2]
    bn.running_mean.fill_(0.1)
    bn.running_var.fill_(0.5)
    prior = BNStatisticsPrior(model.eval())
    prior.targets = [(m.double(), v.double()) for m, v in prior.targets]
    x = torch.rand(2, 2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: prior(t), (x,))
