"""The adaptive attacker: trial-gradient copies of the client's defenses, and noise vs PSNR."""

from __future__ import annotations

import inspect

import pytest
import torch

from gradleak.core.errors import ConfigError
from gradleak.core.registry import ATTACKS, create_attack, create_defense
from gradleak.core.types import LocalTraining
from gradleak.data import sample_batch
from gradleak.defenses.adaptive import adaptive_transform
from gradleak.defenses.prune import smallest_mask
from gradleak.experiment import Scenario, run_scenario
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.inversion.gradients import observed_gradient, trial_gradients
from gradleak.models import build_model

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def setting(digits):
    model = build_model("convnet", shape=SHAPE, num_classes=10, seed=0)
    truth = sample_batch(digits, 2, seed=0)
    return model, truth.inputs, truth.labels


@pytest.fixture()
def one_thread():
    """Optimisation loops run far faster on one thread when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def defended(model, x, y, *specs, protocol="fedsgd"):
    if protocol == "fedsgd":
        update = fedsgd_update(model, x, y)
    else:
        update = fedavg_update(model, x, y, LocalTraining(lr=0.1, epochs=1))
    for spec in specs:
        name, _, opts = spec.partition(":")
        kwargs = dict(kv.split("=") for kv in opts.split(",") if kv)
        kwargs = {k: (v == "true") if v in ("true", "false") else float(v) if "." in v else int(v)
                  for k, v in kwargs.items()}
        defense = create_defense(name, **kwargs)
        update = (defense(update, model=model, inputs=x) if getattr(defense, "needs_inputs", False)
                  else defense(update, model=model))
    return update


@pytest.mark.parametrize("specs", [
    ("clip:norm=0.01",), ("clip:norm=0.001,per_layer=true",), ("prune:ratio=0.9",), ("topk:ratio=0.8",),
    ("soteria:ratio=0.8",), ("quantize:bits=3",), ("sign",), ("prune:ratio=0.5", "clip:norm=0.01"),
])
@pytest.mark.parametrize("protocol", ["fedsgd", "fedavg"])
def test_at_the_true_input_the_copied_defense_reproduces_the_observed_update(setting, specs, protocol):
    """The defining property: the transform maps the true input's gradient onto what was observed."""
    model, x, y = setting
    update = defended(model, x, y, *specs, protocol=protocol)
    transform = adaptive_transform(model, update)
    assert transform is not None
    target = observed_gradient(model, update)
    trial = transform(trial_gradients(model, x.expand(3, *x.shape), y.expand(3, *y.shape)))
    for t, o in zip(trial, target, strict=True):
        assert t.shape == (3, *o.shape)
        scale = o.abs().max().clamp(min=1e-12)
        close = torch.isclose(t[1] / scale, o / scale, atol=1e-4)
        if protocol == "fedavg" and specs[0].startswith(("quantize", "sign")):
            # W_after - W_before rounds some tiny steps to 0 or across a level: allow a few entries
            assert close.double().mean() > 0.99
        else:
            assert close.all()


def test_without_a_deterministic_defense_there_is_no_transform(setting):
    model, x, y = setting
    assert adaptive_transform(model, fedsgd_update(model, x, y)) is None
    assert adaptive_transform(model, defended(model, x, y, "noise:sigma=0.1")) is None


def test_clip_copy_is_differentiable_gradcheck(setting):
    model, x, y = setting
    update = defended(model, x, y, "clip:norm=0.01", "prune:ratio=0.5")
    transform = adaptive_transform(model, update)
    names = [n for n, _ in model.named_parameters()]
    last = names.index("8.bias")
    base = [g.double() for g in trial_gradients(model, x[None], y[None])]

    def f(bias: torch.Tensor) -> torch.Tensor:
        grads = list(base)
        grads[last] = bias
        return transform(grads)[last]

    bias = base[last].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (bias,), eps=1e-7, atol=1e-6)


def test_straight_through_quantisation_passes_gradients(setting):
    model, x, y = setting
    transform = adaptive_transform(model, defended(model, x, y, "quantize:bits=2"))
    g = [t.detach().clone().requires_grad_(True) for t in trial_gradients(model, x[None], y[None])]
    out = transform(g)
    sum(o.sum() for o in out).backward()
    assert all(torch.equal(t.grad, torch.ones_like(t)) for t in g)


@pytest.mark.parametrize("name", ["ig", "dlg", "idlg"])
def test_attacks_take_and_use_the_transform(setting, name):
    model, x, y = setting
    update = defended(model, x[:1], y[:1], "prune:ratio=0.9")
    transform = adaptive_transform(model, update)
    calls = []

    def counting(grads):
        calls.append(1)
        return transform(grads)

    create_attack(name, steps=1, transform=counting, **({"max_iter": 2} if name != "ig" else {})).run(
        model, update, shape=SHAPE)
    assert calls


def test_scenario_rejects_adaptive_for_attacks_without_a_transform():
    without = [n for n in ATTACKS.names() if "transform" not in inspect.signature(ATTACKS.get(n)).parameters]
    if not without:
        pytest.skip("every registered attack has an adaptive mode")
    with pytest.raises(ConfigError, match="adaptive"):
        Scenario(attack=without[0], dataset="digits", adaptive=True).validate()


@pytest.mark.slow
def test_adaptive_attacker_beats_pruning(one_thread):
    """GGL's point at toy scale: copying the defense recovers more than ignoring it."""
    psnr = {}
    for adaptive in (False, True):
        s = Scenario(attack="ig", dataset="digits", model="convnet", batch_size=1, seed=0,
                     attack_options={"steps": 100}, defenses=("prune:ratio=0.9",), adaptive=adaptive)
        result = run_scenario(s)
        assert result.summary()["adaptive"] is adaptive
        psnr[adaptive] = result.metrics["psnr"]
    assert psnr[True] > psnr[False] + 2.0


@pytest.mark.slow
def test_more_noise_means_lower_psnr(one_thread):
    """σ ∈ {0, 1e-2, 1e-1} on digits 8×8 / convnet, b=1, 100 IG steps: PSNR falls strictly."""
    psnrs = []
    for sigma in (0.0, 1e-2, 1e-1):
        s = Scenario(attack="ig", dataset="digits", model="convnet", batch_size=1, seed=0,
                     attack_options={"steps": 100}, defenses=(f"noise:sigma={sigma}",))
        psnrs.append(run_scenario(s).metrics["psnr"])
    assert all(a > b for a, b in zip(psnrs, psnrs[1:], strict=False)), psnrs
    assert psnrs[0] - psnrs[-1] > 10.0, psnrs


@pytest.mark.parametrize("spec", ["prune:ratio=0.9", "topk:ratio=0.9"])
def test_pruning_copy_still_prunes_when_noise_filled_the_zeros(setting, spec):
    model, x, y = setting
    update = defended(model, x, y, spec, "noise:sigma=0.001")
    trial = adaptive_transform(model, update)(trial_gradients(model, x[None], y[None]))
    zeros = sum(int((t == 0).sum()) for t in trial) / sum(t.numel() for t in trial)
    assert zeros == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("spec", ["prune:ratio=0.9", "topk:ratio=0.9"])
def test_faithful_pruning_copy_prunes_the_trial_itself_the_named_variant_uses_the_observed_mask(setting, spec):
    """GGL's copy prunes each trial gradient at its own 90th percentile; ``observed-mask`` (gradleak's
    stronger variant) multiplies by the zero pattern of the *observed* update instead."""
    model, x, y = setting
    update = defended(model, x[:1], y[:1], spec)
    observed = observed_gradient(model, update)
    other = torch.rand_like(x[1:2])  # a trial input different from the client's
    trial = trial_gradients(model, other[None], y[None, 1:2])
    faithful = adaptive_transform(model, update)(trial)
    masked = adaptive_transform(model, update, variant="observed-mask")(trial)
    same_as_observed = all(((o == 0) <= (m[0] == 0)).all() for m, o in zip(masked, observed, strict=True))
    if spec.startswith("prune"):  # each tensor keeps its own 10 % largest entries
        own = [smallest_mask(t[0].abs(), 0.9) for t in trial]
    else:  # the whole gradient keeps its own 10 % largest entries
        keep = smallest_mask(torch.cat([t[0].abs().flatten() for t in trial]), 0.9)
        own = list(torch.split(keep, [t[0].numel() for t in trial]))
    assert same_as_observed
    assert all(torch.equal(f[0] != 0, k.reshape(f[0].shape)) for f, k in zip(faithful, own, strict=True))
    assert not all(torch.equal(f[0] != 0, o != 0) for f, o in zip(faithful, observed, strict=True))
    zeros = sum(int((f == 0).sum()) for f in faithful) / sum(f.numel() for f in faithful)
    assert zeros == pytest.approx(0.9, abs=0.01)
    with pytest.raises(ConfigError, match="variant"):
        adaptive_transform(model, update, variant="oracle")


def test_scenario_takes_the_observed_mask_variant():
    Scenario(attack="ig", dataset="digits", defenses=("prune:ratio=0.9",), adaptive="observed-mask").validate()
    with pytest.raises(ConfigError, match="adaptive must be"):
        Scenario(attack="ig", dataset="digits", adaptive="oracle").validate()
