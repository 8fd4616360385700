"""Model state: trained:EPOCHS (seeded, cached, held-out accuracy) and safe checkpoint loading."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from gradleak.cli import main
from gradleak.core.errors import ConfigError, DataError
from gradleak.experiment import Scenario, run_scenario
from gradleak.experiment.model_state import load_checkpoint, parse_model_state, prepare_model, read_checkpoint
from gradleak.models import build_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GRADLEAK_CACHE", str(folder))
    return folder


def _mlp(seed=0, widths=(32,)):
    return build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=seed, widths=widths)


def test_parse_model_state():
    assert parse_model_state("untrained") == 0 and parse_model_state("trained:5") == 5
    for bad in ("trained", "trained:0", "trained:-1", "trained:x", "pretrained", ""):
        with pytest.raises(ConfigError, match="trained:EPOCHS"):
            parse_model_state(bad)


def test_untrained_attacks_the_attack_split_with_the_seeded_model(cache):
    model, pool, info = prepare_model("mlp", {"widths": (32,)}, "digits", {}, seed=0)
    assert info is None and pool.split == "attack" and len(pool) == 181
    assert torch.equal(model[2].weight, _mlp()[2].weight)
    assert not cache.exists()  # nothing trained, nothing cached


@pytest.mark.slow
def test_trained_beats_chance_is_cached_and_keyed(cache):
    model, pool, info = prepare_model("mlp", {"widths": (32,)}, "digits", {}, seed=0,
                                      model_state="trained:1")
    assert info["cached"] is False and info["test_accuracy"] > 3 * info["chance"]
    assert len(pool) == 181 and info["test_size"] == 178 and info["train_size"] == 1438
    files = sorted(p.suffix for p in (cache / "models").iterdir())
    assert files == [".json", ".safetensors"]
    again, _, info2 = prepare_model("mlp", {"widths": (32,)}, "digits", {}, seed=0, model_state="trained:1")
    assert info2["cached"] is True and info2["test_accuracy"] == info["test_accuracy"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values(), strict=True))
    # a different seed or number of epochs is a different model
    _, _, other = prepare_model("mlp", {"widths": (32,)}, "digits", {}, seed=1, model_state="trained:1")
    assert other["cached"] is False and other["cache_key"] != info["cache_key"]
    # the attacked batch comes from the attack split, which no training example is in
    train_rows = {tuple(x.flatten().tolist()) for x in _digits_train()}
    assert not any(tuple(x.flatten().tolist()) in train_rows for x in pool.inputs)


def _digits_train():
    from gradleak.data.splits import load_splits

    return load_splits("digits", {}).train.inputs


@pytest.mark.slow
def test_run_scenario_reports_the_model_state(cache, tmp_path):
    s = Scenario(attack="ig", dataset="digits", model="mlp", model_options={"widths": (32,)},
                 model_state="trained:1", attack_options={"steps": 3})
    result = run_scenario(s, tmp_path / "run")
    assert result.model_state["test_accuracy"] > 0.3
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["scenario"]["model_state"] == "trained:1"
    with pytest.raises(ConfigError, match="not both"):
        Scenario(model_state="trained:1", checkpoint="x.pt").validate()
    with pytest.raises(ConfigError, match="trained:EPOCHS"):
        Scenario(model_state="trained").validate()


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "pt-nested"])
def test_checkpoint_round_trip(tmp_path, fmt):
    source = _mlp(seed=5)
    state = source.state_dict()
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 3} if fmt == "pt-nested" else state, path)
    target = _mlp(seed=0)
    info = load_checkpoint(target, path)
    assert info["state"] == "checkpoint"
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(),
                                                 target.state_dict().values(), strict=True))


def test_mismatching_checkpoint_lists_keys_and_shapes(tmp_path):
    path = tmp_path / "wide.pt"
    torch.save(_mlp(widths=(48,)).state_dict(), path)
    with pytest.raises(DataError, match=r"2\.weight: checkpoint \(48, 64\) vs model \(32, 64\)"):
        load_checkpoint(_mlp(), path)
    torch.save(_mlp(widths=(32, 32)).state_dict(), path)
    with pytest.raises(DataError, match="unexpected 6.weight"):
        load_checkpoint(_mlp(), path)
    torch.save({"lr": torch.tensor(0.1)}, path)
    with pytest.raises(DataError, match="missing 2.weight"):
        load_checkpoint(_mlp(), path)
    torch.save([1, 2, 3], path)
    with pytest.raises(DataError, match="state dict"):
        read_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable"):
        read_checkpoint(path)
    with pytest.raises(DataError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")


class _Malicious:
    """A pickle payload: unpickling it would create ``marker`` (harmless, but detectable)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dumps"])
def test_malicious_pickle_checkpoint_is_refused_not_executed(tmp_path, how, capsys):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    payload = {**_mlp().state_dict(), "extra": _Malicious(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match="refused|not a readable"):
        load_checkpoint(_mlp(), path)
    assert not marker.exists()
    code = main(["attack", "ig", "--dataset", "digits", "--model", "mlp", "--checkpoint", str(path),
                 "--steps", "2", "--no-progress", "--out", str(tmp_path / "run")])
    assert code == 2 and "checkpoint" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.slow
def test_cli_checkpoint_norm_and_bn_flags(tmp_path, capsys):
    model = build_model("resnet20", shape=(1, 8, 8), num_classes=10, seed=3, norm="gn", width=2)
    path = tmp_path / "r20.safetensors"
    save_file(model.state_dict(), str(path))
    args = ["attack", "ig", "--dataset", "digits", "--model", "resnet20", "--model-option", "width=2",
            "--norm", "gn", "--checkpoint", str(path), "--bn", "train", "--share-bn-stats",
            "--steps", "2", "--no-progress", "--json", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    info = summary["model_state"]
    assert info["state"] == "checkpoint"
    # the accuracy reported is the checkpoint's own, on the validation split (not the seed's fresh model)
    from gradleak.data.splits import load_splits

    test = load_splits("digits", {}).validation
    with torch.no_grad():
        correct = int((model.eval()(test.inputs).argmax(1) == test.labels).sum())
    assert info["test_size"] == len(test) == 178 and info["test_accuracy"] == correct / len(test)
    scenario = json.loads((tmp_path / "run" / "config.json").read_text())["scenario"]
    assert scenario["mode"] == "train" and scenario["share_buffers"] is True
    assert scenario["model_options"]["norm"] == "gn"
    # the same weights under another norm do not fit: refused with the differing keys
    args[args.index("gn")] = "bn"
    args[args.index(str(tmp_path / "run"))] = str(tmp_path / "run2")
    assert main(args) == 2 and "does not fit" in capsys.readouterr().err
