"""The contract every registered attack keeps, run on a tiny case for each name in ``list_attacks()``.

A new attack is tested here the moment it is declared in ``gradleak.core.builtins``: the case is
chosen from its declared capabilities (prior → 28×28 images for the shipped generator; update
kinds → FedSGD gradients or a FedAvg delta) and the first small model it accepts.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

from gradleak.core.errors import GradleakError, NotApplicableError, UpdateMismatchError
from gradleak.core.registry import ATTACKS, create_attack, list_attacks
from gradleak.core.types import ClientUpdate, LocalTraining
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.models import build_model

CANDIDATE_MODELS = ("mlp", "lenet", "convnet")
BATCH = 2


def tiny_case(name: str) -> tuple[nn.Module, ClientUpdate, tuple[int, int, int]]:
    """A small model and update this attack accepts (its ``check`` returns no problem)."""
    cls = ATTACKS.get(name)
    shape = (1, 28, 28) if cls.needs_prior else (1, 8, 8)
    x = torch.rand(BATCH, *shape, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([3, 5])
    attack = create_attack(name, **cls.presets["tiny"])
    for model_name in CANDIDATE_MODELS:
        model = build_model(model_name, shape=shape, num_classes=10, seed=0)
        if "gradients" in cls.update_kinds:
            update = fedsgd_update(model, x, y, labels_leak=True)
        else:
            update = fedavg_update(model, x, y, LocalTraining(lr=0.1, epochs=1, batch_size=1), labels_leak=True)
        if not attack.check(model, update):
            return model, update, shape
    pytest.fail(f"attack {name!r} accepts none of the tiny cases {CANDIDATE_MODELS}")


@pytest.fixture(scope="module", params=list_attacks())
def ran(request):
    name = request.param
    model, update, shape = tiny_case(name)
    options = ATTACKS.get(name).presets["tiny"]
    first = create_attack(name, **options).run(model, update, shape=shape)
    second = create_attack(name, **options).run(model, update, shape=shape)
    return name, first, second, shape


def test_output_has_the_batch_shape_and_pixels_in_range(ran):
    name, rec, _, shape = ran
    assert rec.inputs.shape == (BATCH, *shape)
    assert torch.isfinite(rec.inputs).all() and rec.inputs.min() >= 0 and rec.inputs.max() <= 1
    assert rec.labels is None or (rec.labels.shape == (BATCH,) and rec.labels.dtype == torch.int64)
    assert rec.info["attack"] == name and rec.seconds > 0


def test_same_seed_gives_the_same_result(ran):
    _, first, second, _ = ran
    assert torch.equal(first.inputs, second.inputs)
    assert (first.labels is None) == (second.labels is None)
    assert first.labels is None or torch.equal(first.labels, second.labels)


@pytest.mark.parametrize("name", list_attacks())
def test_an_unusable_update_is_refused_with_every_reason(name):
    """A model with no linear layer and an update without labels: no attack applies."""
    conv = nn.Sequential(nn.Conv2d(1, 10, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    update = fedsgd_update(conv, torch.rand(BATCH, 1, 8, 8), torch.tensor([1, 2]))
    attack = create_attack(name, **ATTACKS.get(name).presets["tiny"])
    problems = attack.check(conv, update)
    assert problems and all(p.kind == "not_applicable" and str(p) for p in problems)
    with pytest.raises(NotApplicableError, match=f"attack '{name}' cannot run"):
        attack.run(conv, update, shape=(1, 8, 8))


@pytest.mark.parametrize("name", list_attacks())
def test_an_update_of_another_model_is_a_mismatch(name):
    model, update, shape = tiny_case(name)
    other = ClientUpdate(update.kind, {k: v[..., :1] for k, v in update.tensors.items()}, update.num_examples,
                         update.local_training, labels=update.labels)
    attack = create_attack(name, **ATTACKS.get(name).presets["tiny"])
    assert {p.kind for p in attack.check(model, other)} >= {"update_mismatch"}
    with pytest.raises(GradleakError) as err:
        attack.run(model, other, shape=shape)
    assert isinstance(err.value, (UpdateMismatchError, NotApplicableError))


@pytest.mark.parametrize("name", list_attacks())
def test_no_access_to_ground_truth(name):
    """Nothing an attack receives can carry the truth, and its code imports nothing that holds it."""
    cls = ATTACKS.get(name)
    for method in (cls.run, cls.reconstruct, cls.check, cls.__init__):
        for param in inspect.signature(method).parameters.values():
            assert "GroundTruth" not in str(param.annotation), (method, param)
    module = inspect.getmodule(cls)
    files = [Path(module.__file__)]
    if Path(module.__file__).parent.name != "attacks":  # an attack package: every file in it
        files = sorted(Path(module.__file__).parent.glob("*.py"))
    forbidden = ("gradleak.data", "gradleak.metrics", "gradleak.experiment", "gradleak.sweep")
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            assert not any(n and n.startswith(forbidden) for n in names), (path, names)
            assert "GroundTruth" not in names, path


@pytest.mark.parametrize("name", list_attacks())
def test_declared_capabilities_match_the_constructor(name):
    cls = ATTACKS.get(name)
    params = inspect.signature(cls).parameters
    assert cls.name == name
    assert cls.takes_seed == ("seed" in params)
    assert cls.takes_labels == ("labels" in params)
    assert cls.supports_adaptive == ("transform" in params)
    assert cls.needs_prior == ("generator" in params)
    assert set(cls.update_kinds) <= {"gradients", "weight_delta"} and cls.update_kinds
    assert set(cls.presets["tiny"]) <= set(params)


def test_an_attack_class_without_reconstruct_is_refused_when_defined():
    from gradleak.attacks.base import Attack

    with pytest.raises(TypeError, match="must implement reconstruct or reconstruct_many"):
        type("Empty", (Attack,), {"name": "empty"})
