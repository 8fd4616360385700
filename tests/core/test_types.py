"""Types, errors and the registry: contracts every component relies on."""

from __future__ import annotations

import pytest
import torch

from gradleak.core.errors import ConfigError, GradleakError, UnknownNameError, UpdateMismatchError
from gradleak.core.registry import ATTACKS, create_attack, list_attacks, list_datasets, list_models
from gradleak.core.types import ClientUpdate, GroundTruth, LocalTraining


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: torch.zeros_like(p) for n, p in model.named_parameters()}


def test_errors_are_value_errors():
    assert issubclass(GradleakError, ValueError)
    err = UnknownNameError("attack", "nope", ["b", "a"])
    assert "choose one of: a, b" in str(err)


def test_local_training_steps_and_validation():
    assert LocalTraining(lr=0.1, epochs=2, batch_size=3).num_steps(7) == 6
    assert LocalTraining(lr=0.1, steps=5).num_steps(100) == 5
    with pytest.raises(ConfigError, match="lr must be"):
        LocalTraining(lr=-1.0)
    with pytest.raises(ConfigError, match="epochs"):
        LocalTraining(epochs=0)


def test_update_validate_lists_every_problem():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    grads = _grads(model)
    grads["0.weight"] = torch.zeros(5, 5)
    grads["1.bias"] = torch.tensor([float("nan"), 0.0])
    del grads["1.weight"]
    grads["extra"] = torch.zeros(1)
    with pytest.raises(UpdateMismatchError) as info:
        ClientUpdate.from_gradients(grads, 1).validate(model)
    msg = str(info.value)
    for part in ("missing tensors", "unknown parameters", "0.weight has shape", "NaN or inf"):
        assert part in msg


def test_weight_delta_needs_local_training():
    with pytest.raises(ConfigError, match="needs local_training"):
        ClientUpdate("weight_delta", {}, 1)
    before = {"w": torch.ones(2)}
    up = ClientUpdate.from_weights(before, {"w": torch.zeros(2)}, 1, LocalTraining(lr=0.5))
    assert torch.equal(up.tensors["w"], -torch.ones(2))


def test_update_is_frozen_and_bad_counts_rejected():
    up = ClientUpdate.from_gradients({"w": torch.ones(1)}, 1)
    with pytest.raises(AttributeError):
        up.num_examples = 2  # type: ignore[misc]
    with pytest.raises(ConfigError):
        ClientUpdate.from_gradients({"w": torch.ones(1)}, 0)
    with pytest.raises(ConfigError):
        GroundTruth(torch.zeros(2, 1, 2, 2), torch.zeros(3, dtype=torch.long))


def test_registry_lists_and_rejects():
    assert {"dlg", "idlg", "ig"} <= set(list_attacks())
    assert {"mnist", "digits"} <= set(list_datasets())
    assert {"mlp", "lenet", "convnet"} <= set(list_models())
    with pytest.raises(UnknownNameError, match="choose one of"):
        ATTACKS.get("does-not-exist")
    with pytest.raises(ConfigError, match="has no option"):
        create_attack("ig", stepz=3)
    assert create_attack("ig", steps=7).steps == 7
