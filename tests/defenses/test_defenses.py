"""Client-side defenses: each one's stated property, seeds, no-op settings, bad parameters."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from gradleak.core.errors import ConfigError, MissingDependencyError, NotApplicableError
from gradleak.core.registry import create_defense, list_defenses
from gradleak.core.types import GroundTruth, LocalTraining
from gradleak.data import sample_batch
from gradleak.defenses.aggregate import SecureAggregation
from gradleak.defenses.base import build_defenses
from gradleak.defenses.pipeline import client_seed, defend
from gradleak.defenses.soteria import representation_scores
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.models import build_model
from gradleak.models.layers import Normalize

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def model():
    return build_model("convnet", shape=SHAPE, num_classes=10, seed=0)


@pytest.fixture(scope="module")
def batch(digits):
    truth = sample_batch(digits, 4, seed=0)
    return truth.inputs, truth.labels


@pytest.fixture(scope="module")
def update(model, batch):
    return fedsgd_update(model, *batch)


@pytest.fixture()
def one_thread():
    """Optimisation loops run far faster on one thread when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def same(a, b) -> bool:
    return set(a.tensors) == set(b.tensors) and all(
        torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_all_defenses_registered():
    expected = {"noise", "clip", "dpsgd", "prune", "topk", "quantize", "sign", "soteria", "mixup",
                "aggregate"}
    assert expected <= set(list_defenses())


@pytest.mark.parametrize("spec", ["noise:sigma=0.1", "noise:scale=0.1", "clip:norm=1",
                                  "clip:norm=1,per_layer=true", "prune:ratio=0.5", "topk:ratio=0.5",
                                  "quantize:bits=4", "sign"])
def test_update_defenses_keep_shapes_and_record_spec(spec, model, update):
    (defense,) = build_defenses([spec], seed=0)
    out = defense(update, model=model)
    out.validate(model)
    assert out.defenses == (defense.spec,)
    assert out.defenses[0].split(":")[0] == spec.split(":")[0]
    assert update.defenses == ()  # the input update is not modified


# --- noise -------------------------------------------------------------------------------------

def test_noise_same_seed_same_noise_other_seed_other_noise(update):
    a = create_defense("noise", sigma=0.1, seed=3)(update)
    b = create_defense("noise", sigma=0.1, seed=3)(update)
    c = create_defense("noise", sigma=0.1, seed=4)(update)
    assert same(a, b)
    assert not same(a, c)


@pytest.mark.parametrize("kind,key,std_factor", [("gaussian", "sigma", 1.0), ("laplace", "scale", 2**0.5)])
def test_noise_has_the_stated_spread(kind, key, std_factor):
    from gradleak.core.types import ClientUpdate

    zero = ClientUpdate.from_gradients({"w": torch.zeros(200_000)}, num_examples=1)
    noisy = create_defense("noise", kind=kind, **{key: 0.05}, seed=0)(zero).tensors["w"]
    assert abs(noisy.mean().item()) < 1e-3
    assert noisy.std().item() == pytest.approx(0.05 * std_factor, rel=0.02)


def test_noise_zero_is_a_no_op(update):
    assert same(create_defense("noise", sigma=0.0)(update), update)


# --- clip --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bound", [1e-3, 0.05, 1.0])
def test_clip_global_norm_within_bound(update, bound):
    out = create_defense("clip", norm=bound)(update)
    total = torch.sqrt(sum((t.double() ** 2).sum() for t in out.tensors.values()))
    assert total <= bound * (1 + 1e-6)
    # clipped to exactly the bound when above it, left as it is when below (the update's norm is ~0.88)
    before = float(torch.sqrt(sum((t.double() ** 2).sum() for t in update.tensors.values())))
    assert float(total) == pytest.approx(min(bound, before), rel=1e-5)
    ratios = [(out.tensors[k] / update.tensors[k])[update.tensors[k] != 0] for k in update.tensors]
    flat = torch.cat(ratios)
    assert torch.allclose(flat, flat[0].expand_as(flat), rtol=1e-5)  # one common factor: direction kept


def test_clip_per_layer_bounds_each_tensor(update):
    out = create_defense("clip", norm=0.01, per_layer=True)(update)
    assert all(t.norm() <= 0.01 * (1 + 1e-6) for t in out.tensors.values())
    for name, t in update.tensors.items():  # each tensor scaled on its own, to the bound where it was above
        assert torch.allclose(out.tensors[name], t * min(1.0, 0.01 / float(t.norm())), rtol=1e-4, atol=1e-12), name


def test_clip_huge_bound_is_a_no_op(update):
    assert same(create_defense("clip", norm=1e9)(update), update)
    assert same(create_defense("clip", norm=1e9, per_layer=True)(update), update)


# --- prune / topk ------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [0.5, 0.9, 0.99])
def test_prune_zeroes_the_stated_fraction_of_each_tensor(update, ratio):
    out = create_defense("prune", ratio=ratio)(update)
    for name, t in out.tensors.items():
        n = t.numel()
        zeros = int((t == 0).sum())
        assert zeros >= round(ratio * n)
        assert zeros <= round(ratio * n) + int((update.tensors[name] == 0).sum())
        kept = t != 0
        if kept.any() and (~kept).any():  # every kept entry is at least as large as every pruned one
            assert update.tensors[name][kept].abs().min() >= update.tensors[name][~kept].abs().max()


def test_topk_keeps_the_largest_fraction_globally(update):
    out = create_defense("topk", ratio=0.9)(update)
    orig = torch.cat([t.reshape(-1) for t in update.tensors.values()])
    kept = torch.cat([t.reshape(-1) for t in out.tensors.values()]) != 0
    assert int((~kept).sum()) >= round(0.9 * orig.numel())
    assert orig[kept].abs().min() >= orig[~kept].abs().max()


@pytest.mark.parametrize("name", ["prune", "topk"])
def test_zero_ratio_is_a_no_op(name, update):
    assert same(create_defense(name, ratio=0.0)(update), update)


# --- quantize / sign ---------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 2, 4])
def test_quantize_levels_and_error(update, bits):
    out = create_defense("quantize", bits=bits)(update)
    for name, q in out.tensors.items():
        t = update.tensors[name]
        assert q.unique().numel() <= 2**bits
        step = (t.max() - t.min()) / (2**bits - 1)
        assert (q - t).abs().max() <= step / 2 + 1e-6


def test_sign_sends_signs(update):
    out = create_defense("sign")(update)
    for name, s in out.tensors.items():
        assert torch.equal(s, torch.sign(update.tensors[name]))


# --- soteria -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_soteria_masks_the_stated_fraction_of_last_layer_columns(digits):
    model = build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=(64,))
    truth = sample_batch(digits, 2, seed=1)
    update = fedsgd_update(model, truth.inputs, truth.labels)
    out = create_defense("soteria", ratio=0.75)(update, model=model, inputs=truth.inputs)
    w = out.tensors["4.weight"]
    masked = (w.abs().sum(0) == 0).sum().item()
    assert masked >= 48  # 75 % of 64 features
    for name in update.tensors:
        if name != "4.weight":
            assert torch.equal(out.tensors[name], update.tensors[name])
    assert same(create_defense("soteria", ratio=0.0)(update, model=model, inputs=truth.inputs), update)


def test_soteria_scores_match_an_explicit_jacobian():
    torch.manual_seed(0)
    model = nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    scores = representation_scores(model, x, eps=0.1)
    expected = torch.zeros(6, dtype=torch.float64)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(lambda xi: model[:-1](xi[None])[0], x[b])
        r = model[:-1](x[b][None])[0]
        expected += jac.reshape(6, -1).norm(dim=1) / (r.abs() + 0.1)
    assert torch.allclose(scores, expected.detach(), atol=1e-10)


def test_soteria_needs_inputs_and_a_linear_head(update, model):
    with pytest.raises(ConfigError, match="inputs"):
        create_defense("soteria")(update, model=model)
    conv_only = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with pytest.raises(NotApplicableError, match="nn.Linear"):
        create_defense("soteria")(update, model=conv_only, inputs=torch.rand(1, *SHAPE))


# --- training defenses -------------------------------------------------------------------------

@pytest.mark.slow
def test_dpsgd_without_noise_and_clipping_is_the_plain_update(model, batch):
    dp = create_defense("dpsgd", noise=0.0, clip=1e9)
    plain, private = fedsgd_update(model, *batch), fedsgd_update(model, *batch, trainer=dp)
    for k in plain.tensors:
        assert torch.allclose(private.tensors[k], plain.tensors[k], atol=1e-6)
    local = LocalTraining(lr=0.1, epochs=2)
    plain, private = (fedavg_update(model, *batch, local, seed=1),
                      fedavg_update(model, *batch, local, seed=1, trainer=dp))
    for k in plain.tensors:
        assert torch.allclose(private.tensors[k], plain.tensors[k], atol=1e-6)


@pytest.mark.slow
def test_dpsgd_clips_per_sample_and_seeds_its_noise(model, batch):
    clipped = fedsgd_update(model, *batch, trainer=create_defense("dpsgd", noise=0.0, clip=1e-3))
    assert torch.sqrt(sum((t**2).sum() for t in clipped.tensors.values())) <= 1e-3 * (1 + 1e-4)
    a = fedsgd_update(model, *batch, trainer=create_defense("dpsgd", noise=1.0, seed=5))
    b = fedsgd_update(model, *batch, trainer=create_defense("dpsgd", noise=1.0, seed=5))
    c = fedsgd_update(model, *batch, trainer=create_defense("dpsgd", noise=1.0, seed=6))
    assert same(a, b) and not same(a, c)


@pytest.mark.parametrize("target", [1.0, 8.0])
def test_dpsgd_reports_epsilon_from_the_accountant(model, batch, target):
    dp = create_defense("dpsgd", epsilon=target, delta=1e-5)
    update = dp(fedsgd_update(model, *batch, trainer=dp))
    privacy = update.meta["privacy"]
    assert privacy["epsilon"] == pytest.approx(target, rel=0.02)
    assert privacy["delta"] == 1e-5 and privacy["sample_rate"] == 1.0 and privacy["steps"] == 1
    more = create_defense("dpsgd", noise=privacy["noise_multiplier"] / 2)
    assert more.public_meta(update)["privacy"]["epsilon"] > privacy["epsilon"]


def test_dpsgd_refuses_batchnorm_naming_the_fix_or_converts_it(batch):
    bn = nn.Sequential(Normalize(), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                       nn.Flatten(), nn.Linear(4 * 64, 10)).eval()
    with pytest.raises(ConfigError, match="fix_bn=true"):
        create_defense("dpsgd").prepare_model(bn)
    fixed = create_defense("dpsgd", fix_bn=True).prepare_model(bn)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in fixed.modules()) and not fixed.training
    update = fedsgd_update(fixed, *batch, trainer=create_defense("dpsgd", fix_bn=True))
    update.validate(fixed)


def test_dpsgd_missing_opacus_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)
    with pytest.raises(MissingDependencyError, match=r"gradleak\[dp\]"):
        create_defense("dpsgd")


def test_mixup_trains_on_the_mixed_inputs(model, batch):
    x, y = batch
    mix = create_defense("mixup", alpha=1.0, seed=2)
    truth = mix.client_truth(GroundTruth(x, y))
    lam, perm = mix.mixing(x.shape[0])
    assert 0 < lam < 1 and torch.allclose(truth.inputs, lam * x + (1 - lam) * x[perm])
    mixed_update = fedsgd_update(model, x, y, trainer=mix)
    params = dict(model.named_parameters())
    logits = model(truth.inputs)
    loss = (lam * nn.functional.cross_entropy(logits, y)
            + (1 - lam) * nn.functional.cross_entropy(logits, y[perm]))
    for name, g in zip(params, torch.autograd.grad(loss, list(params.values())), strict=True):
        assert torch.allclose(mixed_update.tensors[name], g, atol=1e-6), name
    unmixed = fedsgd_update(model, x, y, trainer=create_defense("mixup", alpha=0.0))
    assert same(unmixed, fedsgd_update(model, x, y))


def test_aggregate_of_fedsgd_updates_is_the_gradient_of_all_examples(model, digits):
    a, b = sample_batch(digits, 2, seed=0), sample_batch(digits, 3, seed=1)
    combined = SecureAggregation(clients=2).combine([fedsgd_update(model, a.inputs, a.labels),
                                                    fedsgd_update(model, b.inputs, b.labels)])
    joint = fedsgd_update(model, torch.cat([a.inputs, b.inputs]), torch.cat([a.labels, b.labels]))
    assert combined.num_examples == 5
    for k in joint.tensors:
        assert torch.allclose(combined.tensors[k], joint.tensors[k], atol=1e-6)


@pytest.mark.slow
def test_defend_aggregates_clients_with_derived_seeds(model, digits):
    truth = sample_batch(digits, 2, seed=0)

    def make(m, x, y, trainer):
        return fedsgd_update(m, x, y, trainer=trainer)

    def sample(k):
        return sample_batch(digits, 2, seed=100 + k)

    out = defend(model, truth, ["noise:sigma=0.01", "aggregate:clients=3"], make, seed=0, sample=sample)
    assert out.clients == 3 and out.update.num_examples == 6 and out.truth.inputs.shape[0] == 6
    assert torch.equal(out.truth.inputs[:2], truth.inputs)
    assert out.update.defenses[-1] == "aggregate:clients=3"
    single = defend(model, truth, ["noise:sigma=0.01"], make, seed=0)
    one = defend(model, truth, ["noise:sigma=0.01", "aggregate:clients=1"], make, seed=0)
    assert all(torch.equal(single.update.tensors[k], one.update.tensors[k]) for k in single.update.tensors)
    # client k is its own batch with noise from its derived seed: client 0 keeps the scenario's seed,
    # the others get seeds of their own (the same noise for every client would be seen here)
    seeds = [client_seed(0, k) for k in range(3)]
    assert seeds[0] == 0 and len(set(seeds)) == 3
    batches = [truth, sample(1), sample(2)]
    clients = [defend(model, b, ["noise:sigma=0.01"], make, seed=s).update for b, s in zip(batches, seeds)]
    expected = SecureAggregation(clients=3).combine(clients)
    for k in expected.tensors:
        assert torch.allclose(out.update.tensors[k], expected.tensors[k], atol=1e-7), k
    same_seed = SecureAggregation(clients=3).combine(
        [defend(model, b, ["noise:sigma=0.01"], make, seed=0).update for b in batches])
    assert not all(torch.allclose(out.update.tensors[k], same_seed.tensors[k], atol=1e-7) for k in expected.tensors)


@pytest.mark.parametrize("specs,match", [
    (["aggregate:clients=2", "noise"], "last"),
    (["mixup", "dpsgd"], "at most one"),
])
def test_bad_compositions_are_rejected(model, digits, specs, match):
    truth = sample_batch(digits, 1, seed=0)
    with pytest.raises(ConfigError, match=match):
        defend(model, truth, specs, lambda m, x, y, t: fedsgd_update(m, x, y, trainer=t), seed=0,
               sample=lambda k: truth)


@pytest.mark.parametrize("spec,match", [
    ("noise:sigma=-0.1", "sigma"),
    ("noise:scale=-1", "scale"),
    ("noise:sigma=0.1,kind=laplace", "scale"),
    ("noise:kind=uniform", "kind"),
    ("clip:norm=0", "norm"),
    ("clip:norm=-4", "norm"),
    ("prune:ratio=1.0", r"\[0, 1\)"),
    ("prune:ratio=-0.1", r"\[0, 1\)"),
    ("topk:ratio=1.5", r"\[0, 1\)"),
    ("soteria:ratio=1", r"\[0, 1\)"),
    ("quantize:bits=0", "bits"),
    ("mixup:alpha=-1", "alpha"),
    ("aggregate:clients=0", "clients"),
    ("dpsgd:clip=0", "clip"),
    ("dpsgd:noise=-1", "noise"),
    ("dpsgd:noise=1,epsilon=8", "not both"),
    ("dpsgd:delta=1.5", "delta"),
    ("noise:sigma=0.1,bogus=1", "bogus"),
    ("prune:percent=90", "percent"),
])
def test_bad_parameters_are_rejected(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_defenses([spec], seed=0)


def test_scenario_checks_defenses_before_loading_anything():
    from gradleak.experiment import Scenario

    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        Scenario(dataset="digits", defenses=("prune:ratio=1",)).validate()
    with pytest.raises(ConfigError, match="last"):
        Scenario(dataset="digits", defenses=("aggregate:clients=2", "noise")).validate()


@pytest.mark.slow
def test_run_scenario_reports_epsilon_and_recovered_images(one_thread):
    from gradleak.core.types import ClientUpdate
    from gradleak.defenses.pipeline import RECOVERED_PSNR, Defended, defense_metrics
    from gradleak.experiment import Scenario, run_scenario

    dp = run_scenario(Scenario(attack="ig", dataset="digits", attack_options={"steps": 2},
                               defenses=("dpsgd:epsilon=8",)))
    assert dp.metrics["epsilon"] == pytest.approx(8.0, rel=0.02) and dp.metrics["delta"] == 1e-5
    agg = run_scenario(Scenario(attack="ig", dataset="digits", batch_size=2, attack_options={"steps": 2},
                                defenses=("aggregate:clients=3",)))
    assert agg.metrics["clients"] == 3 and agg.metrics["images"] == 6
    psnrs = agg.per_image["psnr"]
    assert len(psnrs) == 6 and agg.metrics["recovered"] == sum(p >= RECOVERED_PSNR for p in psnrs)
    # the count itself, on per-image PSNRs either side of the threshold (20 dB counts)
    defended = Defended(None, ClientUpdate.from_gradients({"w": torch.zeros(1)}, 6), None, clients=3)
    psnr = [25.0, 19.9, 20.0, float("inf"), 5.0, 30.0]
    assert defense_metrics(defended, {"per_image": {"psnr": psnr}}) == {"clients": 3, "images": 6, "recovered": 4}


def test_soteria_on_a_batchnorm_model_in_train_mode_leaves_buffers_alone(batch):
    torch.manual_seed(0)
    bn = nn.Sequential(Normalize(), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                       nn.Flatten(), nn.Linear(4 * 64, 10)).train()
    update = fedsgd_update(bn, *batch, mode="train")
    before = bn[2].running_mean.clone()
    out = create_defense("soteria", ratio=0.5)(update, model=bn, inputs=batch[0])
    assert (out.tensors["5.weight"].abs().sum(0) == 0).sum() >= 128
    assert torch.equal(bn[2].running_mean, before)
