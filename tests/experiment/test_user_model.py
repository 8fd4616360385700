"""Your own architecture: FILE.py:FACTORY and module:FACTORY specs, options, seeding, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from gradleak.core.errors import ConfigError
from gradleak.experiment.model_state import prepare_model
from gradleak.experiment.user_model import build_named_model, build_user_model, is_user_model

EXAMPLE = str(Path(__file__).parents[2] / "examples" / "user_model" / "model.py") + ":build"

SOURCE = '''
import torch
from torch import nn

def build(shape, num_classes, hidden=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))

def no_arguments():
    return nn.Linear(64, 10)

def not_a_model(shape, num_classes):
    return "oops"
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(SOURCE)
    return path


def test_file_spec_builds_the_factory_with_options_and_seed(model_file):
    a = build_user_model(f"{model_file}:build", shape=(1, 8, 8), num_classes=10, seed=3, options={"hidden": 7})
    b = build_user_model(f"{model_file}:build", shape=(1, 8, 8), num_classes=10, seed=3, options={"hidden": 7})
    c = build_user_model(f"{model_file}:build", shape=(1, 8, 8), num_classes=10, seed=4, options={"hidden": 7})
    assert a[1].out_features == 7 and a[3].out_features == 10
    assert torch.equal(a[1].weight, b[1].weight) and not torch.equal(a[1].weight, c[1].weight)
    # a factory that takes nothing is called with nothing
    assert build_user_model(f"{model_file}:no_arguments", shape=(1, 8, 8), num_classes=10, seed=0).in_features == 64


def test_global_random_state_untouched(model_file):
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    build_user_model(f"{model_file}:build", shape=(1, 8, 8), num_classes=10, seed=0)
    assert torch.equal(torch.rand(2), expected)


def test_module_spec(model_file, monkeypatch):
    monkeypatch.syspath_prepend(str(model_file.parent))
    model = build_named_model("my_net:build", shape=(1, 8, 8), num_classes=10, seed=0)
    assert isinstance(model, torch.nn.Sequential)
    sys.modules.pop("my_net", None)


@pytest.mark.parametrize(("spec", "options", "match"), [
    ("{dir}/missing.py:build", {}, "does not exist"),
    ("{file}:nope", {}, "has no function or class 'nope'; it defines: build, no_arguments, not_a_model"),
    ("{file}:not_a_model", {}, "returned str, not a torch.nn.Module"),
    ("{file}:build", {"depth": 3}, "has no option(s) depth; valid options: hidden"),
    ("no_such_module_xyz:build", {}, "cannot import module 'no_such_module_xyz'"),
    ("{file}:", {}, "write FILE.py:FACTORY"),
])
def test_bad_specs_say_what_to_fix(model_file, spec, options, match):
    spec = spec.format(dir=model_file.parent, file=model_file)
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace(")", r"\)")):
        build_named_model(spec, shape=(1, 8, 8), num_classes=10, seed=0, options=options)


def test_registered_names_are_not_user_specs():
    assert not is_user_model("convnet") and is_user_model("pkg.mod:fn") and is_user_model("a/b.py:fn")


def test_example_model_loads_a_checkpoint_through_prepare_model(tmp_path):
    from safetensors.torch import save_file

    model = build_user_model(EXAMPLE, shape=(1, 8, 8), num_classes=10, seed=1)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded, test, info = prepare_model(EXAMPLE, {}, "digits", {}, seed=0, checkpoint=path)
    assert info["state"] == "checkpoint" and len(test) < 1797
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
