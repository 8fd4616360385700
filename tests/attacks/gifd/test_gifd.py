"""GIFD: feature-domain search, best stage/restart selection, label mapping."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gradleak.attacks.gifd.attack import GIFD, ramp
from gradleak.attacks.gifd.label_map import map_labels, naive_classes, parse_label_map
from gradleak.core.errors import ConfigError, DataError
from gradleak.core.registry import ATTACKS, create_attack
from gradleak.core.types import GroundTruth, Reconstruction
from gradleak.data import sample_batch
from gradleak.fl import fedsgd_update
from gradleak.generative.base import ModuleGenerator
from gradleak.generative.dcgan import ConditionalDCGAN
from gradleak.metrics import evaluate
from gradleak.models import build_model

SHAPE = (1, 28, 28)


def small_setup(b: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    gen = ConditionalDCGAN(width=4).eval()
    model = build_model("convnet", shape=SHAPE, num_classes=10, seed=seed, width=4)
    x = torch.rand(b, *SHAPE, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(b) + 2
    return gen, model, fedsgd_update(model, x, y), x, y


@pytest.mark.slow
def test_registered_and_smoke_batched() -> None:
    assert "gifd" in ATTACKS
    gen, model, update, _, y = small_setup(b=2)
    attack = create_attack("gifd", generator=gen, steps=3, restarts=3, seed=1)
    rec = attack.run(model, update, shape=SHAPE)
    assert rec.inputs.shape == (2, *SHAPE) and rec.labels.tolist() == y.tolist()
    assert len(rec.loss_history) == 3 * 3 and set(rec.info["stage_losses"]) == {"0", "1", "2"}
    assert all(len(v) == 3 for v in rec.info["stage_losses"].values())
    json.dumps(rec.info)  # the run folder writes it


@pytest.mark.slow
def test_output_is_the_lowest_loss_stage_and_restart_not_the_last() -> None:
    gen, model, update, _, _ = small_setup(seed=2)
    res = GIFD(generator=gen, steps=4, restarts=4, seed=3).search(model, update, shape=SHAPE)
    flat = [(v, k, r) for k, vs in res.stage_losses.items() for r, v in enumerate(vs)]
    loss, k, r = min(flat)
    assert (res.best_stage, res.best_restart) == (k, r)
    rec = GIFD(generator=gen, steps=4, restarts=4, seed=3).run(model, update, shape=SHAPE)
    assert torch.allclose(rec.inputs, res.stage_images[k])
    assert rec.info["final_loss"] == pytest.approx(loss)
    # the reported loss is that image's own gradient loss (the official code paired a loss with another image)
    from gradleak.inversion.gradients import observed_gradient, trial_gradients
    from gradleak.inversion.losses import cosine_distance

    own = cosine_distance(trial_gradients(model, rec.inputs[None], rec.labels[None]), observed_gradient(model, update))
    assert float(own[0].detach()) == pytest.approx(loss, abs=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"lr": 0.0}, "lr"), ({"radius_mode": "big"}, "radius_mode"),
    ({"radii": (-1.0,)}, "radii"), ({"stages": (2, 1)}, "stages"), ({"label_map": "nowhere.json"}, "label_map"),
])
def test_bad_options_raise_config_error(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        GIFD(**kwargs)


def test_generator_that_does_not_fit_raises_config_error() -> None:
    gen, model, update, _, _ = small_setup()
    with pytest.raises(ConfigError, match="stages"):
        GIFD(generator=gen, steps=1, stages=(0, 5)).run(model, update, shape=SHAPE)
    small = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    upd = fedsgd_update(small, torch.rand(1, 1, 8, 8), torch.tensor([1]))
    with pytest.raises(ConfigError, match="shape"):
        GIFD(generator=gen, steps=1).run(small, upd, shape=(1, 8, 8))


def test_ramp_warms_up_and_decays() -> None:
    assert ramp(0.0) == 0.0 and ramp(0.05) == pytest.approx(1.0) and ramp(0.25) == pytest.approx(1.0)
    assert 0 < ramp(0.6) < 1 and ramp(1.0) == pytest.approx(0.0)


def test_adaptive_transform_is_applied_to_trial_gradients() -> None:
    gen, model, update, _, _ = small_setup()
    calls = []

    def transform(grads):
        calls.append(grads[0].shape[0])
        return [g * 0.5 for g in grads]

    GIFD(generator=gen, steps=2, restarts=2, transform=transform).run(model, update, shape=SHAPE)
    assert calls and set(calls) == {2}


@pytest.mark.slow
def test_feature_stages_beat_the_latent_stage(mnist) -> None:
    """The paper's claim at toy scale: searching the generator's intermediate features (in their
    l1 balls) reaches a far closer image than the latent search alone (stage 0, GGL-like)."""
    truth = sample_batch(mnist, 1, seed=1)
    model = build_model("convnet", shape=SHAPE, num_classes=10, seed=1, width=8)
    update = fedsgd_update(model, truth.inputs, truth.labels)
    res = GIFD(generator="mnist-dcgan", steps=40, restarts=1).search(model, update, shape=SHAPE)
    psnr = {k: evaluate(Reconstruction(x, res.labels), truth)["psnr"] for k, x in res.stage_images.items()}
    assert min(res.stage_losses[2]) < min(res.stage_losses[1]) < min(res.stage_losses[0])
    assert psnr[2] > psnr[0] + 3.0, psnr
    assert res.best_stage == 2


class Templates(nn.Module):
    """Class k draws template k (plus a small latent-driven wiggle)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("t", torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(9)))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.t[y] + 0.05 * torch.tanh(z[:, :64]).reshape(-1, 1, 8, 8)).clamp(0, 1)


@pytest.mark.slow
def test_label_map_search_finds_the_class_that_made_the_image() -> None:
    """Task label 7 has no generator class; the image is class 4's template: the search maps 7 → 4."""
    gen = ModuleGenerator(Templates(), latent_dim=64, num_classes=5, image_shape=(1, 8, 8))
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    x = gen(torch.zeros(1, 64), torch.tensor([4]))
    update = fedsgd_update(model, x, torch.tensor([7]))
    truth = GroundTruth(x, torch.tensor([7]))
    psnr = {}
    for mode in ("auto", "none"):
        rec = GIFD(generator=gen, steps=20, restarts=2, label_map=mode, map_steps=10).run(
            model, update, shape=(1, 8, 8))
        psnr[mode] = evaluate(rec, truth)["psnr"]
        assert rec.labels.tolist() == [7]
        assert rec.info["mapping"] == ({7: 4} if mode == "auto" else {7: 2})
    assert psnr["auto"] > psnr["none"] + 5, psnr


def test_map_labels_modes_and_files(tmp_path) -> None:
    gen = ConditionalDCGAN(num_classes=5, width=4, class_labels=[0, 1, 2, 3, 4])
    calls = []

    def score(cands):
        calls.append(cands.clone())
        return (cands - torch.tensor([3, 1])).abs().sum(1).float()

    labels = torch.tensor([6, 9])
    classes, info = map_labels(labels, gen, "search", score)
    assert classes.tolist() == [3, 1] and info["label_map"] == "search" and len(calls) == 2
    assert all(c.shape == (5, 2) for c in calls)
    assert map_labels(torch.tensor([1, 2]), gen, "auto", score)[1]["label_map"] == "table"
    assert naive_classes(labels, gen).tolist() == [1, 4]
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"6": 0, "9": 2}))
    assert map_labels(labels, gen, str(path), score)[0].tolist() == [0, 2]
    assert parse_label_map({"5": "1"}) == {5: 1}
    with pytest.raises(ConfigError, match="misses task label"):
        map_labels(torch.tensor([8]), gen, str(path), score)
    path.write_text(json.dumps({"6": 7}))
    with pytest.raises(ConfigError, match="outside"):
        map_labels(torch.tensor([6]), gen, str(path), score)
    path.write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        parse_label_map(str(path))
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        parse_label_map(str(path))


def test_cli_label_map_flag_reaches_the_attack_options(tmp_path) -> None:
    from gradleak.cli import build_parser, scenario_from_args

    args = build_parser().parse_args(["attack", "gifd", "--label-map", "none", "-p", "radii=0.2,0.4",
                                      "-p", "stages=2", "--steps", "3"])
    scenario = scenario_from_args(args)
    assert scenario.attack_options == {"label_map": "none", "radii": (0.2, 0.4), "stages": 2, "steps": 3}
    attack = GIFD(**scenario.attack_options)
    assert attack.stages == (2,) and attack.radii == (0.2, 0.4) and attack.label_map == "none"


def test_evaluations_count_every_gradient_loss_evaluation(monkeypatch) -> None:
    gen, model, update, _, _ = small_setup(b=2, seed=1)
    rows: list[int] = []
    original = GIFD._grad_loss

    def spy(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)

        def counted(x, n):
            rows.append(n)
            return loss(x, n)

        return counted

    monkeypatch.setattr(GIFD, "_grad_loss", spy)
    rec = GIFD(generator=gen, steps=3, restarts=2, seed=0).run(model, update, shape=SHAPE)
    # 3 stages x 2 restarts x (3 steps + the score of each stage's last iterate)
    assert rec.info["evaluations"] == sum(rows) == 3 * 2 * (3 + 1)
