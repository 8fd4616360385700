"""Devices: every attack on ``device="cpu"`` explicitly, and (where a GPU exists) on CUDA.

The ``cuda`` tests are skipped where ``torch.cuda.is_available()`` is false (``tests/conftest.py``).
"""

from __future__ import annotations

import pytest
import torch

from gradleak.core.device import DeviceError, resolve_device
from gradleak.core.registry import ATTACKS, create_attack, create_defense, list_attacks
from gradleak.core.types import LocalTraining
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.models import build_model

BATCH = 2


def case(name: str, device: str = "cpu"):
    """A small model (on ``device``) and update this attack accepts, and the input shape."""
    cls = ATTACKS.get(name)
    shape = (1, 28, 28) if cls.needs_prior else (1, 8, 8)
    x = torch.rand(BATCH, *shape, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.tensor([3, 5], device=device)
    attack = create_attack(name, **cls.presets["tiny"])
    for model_name in ("mlp", "lenet", "convnet"):
        model = build_model(model_name, shape=shape, num_classes=10, seed=0).to(device)
        if "gradients" in cls.update_kinds:
            update = fedsgd_update(model, x, y, labels_leak=True)
        else:
            update = fedavg_update(model, x, y, LocalTraining(lr=0.1, batch_size=1), labels_leak=True)
        if not attack.check(model, update):
            return model, update, shape
    raise AssertionError(f"no tiny case for {name}")


@pytest.mark.parametrize("name", list_attacks())
def test_every_attack_runs_on_the_cpu_when_asked(name):
    model, update, shape = case(name)
    options = ATTACKS.get(name).presets["tiny"]
    rec = create_attack(name, **options).run(model, update, shape=shape, device="cpu")
    again = create_attack(name, **options).run(model, update, shape=shape, device=torch.device("cpu"))
    assert rec.info["device"] == "cpu" and rec.inputs.device.type == "cpu"
    assert rec.inputs.shape == (BATCH, *shape) and torch.equal(rec.inputs, again.inputs)
    many = create_attack(name, **options).run_many(model, [update, update], shape=shape, device="cpu")
    # a generator's Adam steps amplify the batched kernels' float rounding: with the shipped
    # mnist-dcgan, gifd's losses agree to 1e-7 but its pixels differ by up to 3e-4 after 2 steps
    atol = 1e-3 if ATTACKS.get(name).needs_prior else 1e-4
    assert all(torch.allclose(m.inputs, rec.inputs, atol=atol) for m in many)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_a_missing_gpu_is_a_one_line_error():
    model, update, shape = case("ig")
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match="no CUDA GPU") as err:
            create_attack("ig", steps=2).run(model, update, shape=shape, device=spec)
        assert "\n" not in str(err.value) and "--device cpu" in str(err.value)
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        resolve_device("gpu")


# -- where a GPU exists ----------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("name", list_attacks())
def test_every_attack_on_cuda_matches_the_cpu_and_returns_cpu_tensors(name):
    model, update, shape = case(name)
    options = ATTACKS.get(name).presets["tiny"]
    on_cpu = create_attack(name, **options).run(model, update, shape=shape, device="cpu")
    on_gpu = create_attack(name, **options).run(model, update, shape=shape, device="cuda")
    again = create_attack(name, **options).run(model, update, shape=shape, device="cuda")
    assert on_gpu.inputs.device.type == "cpu" and on_gpu.info["device"].startswith("cuda" if not
                                                                                    ATTACKS.get(name).cpu_only
                                                                                    else "cpu")
    assert torch.equal(on_gpu.inputs, again.inputs)  # same seed, same numbers on the device
    assert (on_gpu.labels is None) == (on_cpu.labels is None)
    # a few steps from the same start: the devices agree to float tolerance (sign flips aside)
    assert float((on_gpu.inputs - on_cpu.inputs).abs().mean()) < 0.05


@pytest.mark.cuda
def test_an_attack_follows_the_models_device():
    model, update, shape = case("ig", device="cuda")
    rec = create_attack("ig", steps=3).run(model, update, shape=shape)
    assert rec.info["device"].startswith("cuda") and rec.inputs.device.type == "cpu"


@pytest.mark.cuda
def test_run_many_on_cuda_equals_runs_on_cuda():
    model, update, shape = case("ig", device="cuda")
    other = fedsgd_update(model, torch.rand(BATCH, *shape, device="cuda"), torch.tensor([1, 7], device="cuda"))
    attack = create_attack("ig", steps=5, restarts=2)
    many = attack.run_many(model, [update, other], shape=shape)
    for u, m in zip((update, other), many):
        assert torch.allclose(attack.run(model, u, shape=shape).inputs, m.inputs, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("spec", ["noise:sigma=0.01", "prune:ratio=0.5", "topk:ratio=0.5", "clip:norm=0.1",
                                  "quantize:bits=4", "sign", "soteria:ratio=0.5"])
def test_defenses_keep_the_update_on_cuda(spec):
    from gradleak.defenses.base import build_defenses
    from gradleak.defenses.pipeline import apply_defense

    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0).cuda()
    x = torch.rand(2, 1, 8, 8, device="cuda")
    update = fedsgd_update(model, x, torch.tensor([1, 2], device="cuda"))
    (defense,) = build_defenses([spec], seed=0)
    out = apply_defense(defense, update, model, x)
    assert all(t.device.type == "cuda" for t in out.tensors.values())
    if spec.startswith("noise"):  # noise is drawn on the CPU: the same on every device
        cpu = create_defense("noise", sigma=0.01)(fedsgd_update(model.cpu(), x.cpu(), torch.tensor([1, 2])))
        assert all(torch.allclose(out.tensors[k].cpu(), cpu.tensors[k], atol=1e-5) for k in cpu.tensors)


@pytest.mark.cuda
@pytest.mark.parametrize("method", ["idlg", "lsq", "bias", "geng", "ilrg", "llg", "yin", "dimitrov"])
def test_label_methods_run_on_cuda(method):
    from gradleak.core.registry import LABEL_METHODS

    b = 1 if method == "idlg" else 3
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0).cuda()
    labels = torch.tensor([2, 5, 7][:b], device="cuda")
    update = fedsgd_update(model, torch.rand(b, 1, 8, 8, device="cuda"), labels)
    found = LABEL_METHODS.get(method)(model, update, shape=(1, 8, 8))
    assert found.device.type == "cuda" and found.shape == (b,)


@pytest.mark.cuda
def test_a_scenario_runs_on_cuda_end_to_end():
    from gradleak.experiment import Scenario, run_scenario

    s = Scenario(attack="ig", dataset="digits", model="convnet", batch_size=2, attack_options={"steps": 5},
                 defenses=("noise:sigma=0.001",))
    gpu, cpu = run_scenario(s, device="cuda"), run_scenario(s, device="cpu")
    assert gpu.reconstruction.info["device"].startswith("cuda") and gpu.truth.inputs.device.type == "cpu"
    assert gpu.metrics["psnr"] == pytest.approx(cpu.metrics["psnr"], abs=1.0)
    assert torch.equal(run_scenario(s, device="cuda").reconstruction.inputs, gpu.reconstruction.inputs)


@pytest.mark.cuda
def test_prior_training_runs_on_cuda(tmp_path):
    from gradleak.generative.train import train_prior

    g = train_prior("mnist", classes=(0, 1), epochs=1, batch_size=64, width=4, device="cuda",
                    samples_dir=tmp_path)
    assert next(g.parameters()).device.type == "cpu" and list(tmp_path.glob("*.png"))
