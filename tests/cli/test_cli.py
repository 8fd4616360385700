"""The command line: JSON output, run folders, one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
import torch

from gradleak.cli import main
from gradleak.experiment.update_io import save_update

FAST = ["--dataset", "digits", "--model", "convnet", "--steps", "5", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


def test_attack_json_and_run_folder(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, _ = run(capsys, "attack", "ig", *FAST, "--batch-size", "2", "--json", "--out", str(out_dir),
                       "--save-tensors")
    assert code == 0
    summary = json.loads(out)
    for key in ("attack", "dataset", "model", "batch_size", "protocol", "seed", "seconds", "out_dir"):
        assert key in summary
    assert set(summary["metrics"]) >= {"mse", "psnr", "ssim", "label_accuracy", "exact_fraction"}
    assert "lpips" not in summary["metrics"]  # shown only when computed (--lpips)
    assert summary["fit"]["cosine_distance"] is not None
    for name in ("config.json", "metrics.json", "reconstruction.png", "tensors.safetensors"):
        assert (out_dir / name).is_file()
    config = json.loads((out_dir / "config.json").read_text())
    assert config["scenario"]["batch_size"] == 2 and config["scenario"]["attack_options"]["steps"] == 5


def test_same_seed_twice_identical_metrics(tmp_path, capsys):
    results = []
    for i in range(2):
        code, out, _ = run(capsys, "attack", "ig", *FAST, "--seed", "3", "--json", "--out", str(tmp_path / str(i)))
        assert code == 0
        results.append(json.loads(out)["metrics"])
    assert results[0] == results[1]


@pytest.mark.parametrize(("argv", "match"), [
    (["attack", "nope"], "unknown attack 'nope'; choose one of: "),
    (["attack", "ig", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["attack", "ig", "--model", "nope"], "unknown model 'nope'"),
    (["attack", "ig", "--batch-size", "0"], "batch size must be"),
    (["attack", "ig", "--dataset", "digits", "--batch-size", "5000"], "larger than dataset"),
    (["attack", "ig", "--protocol", "fedprox"], "protocol must be one of"),
    (["attack", "ig", "-p", "nonsense=1"], "has no option"),
    (["attack", "ig", "--steps", "abc"], "invalid int value"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, match):
    code, out, err = run(capsys, *argv, "--no-progress", "--out", str(tmp_path / "x"))
    assert code == 2 and match in err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
    assert not (tmp_path / "x").exists()


def test_existing_out_dir_refused_unless_overwrite(tmp_path, capsys):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    (out_dir / "config.json").write_text('{"my": "config"}')
    code, _, err = run(capsys, "attack", "ig", *FAST, "--out", str(out_dir))
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "attack", "ig", *FAST, "--out", str(out_dir), "--overwrite")
    assert code == 2 and "not a gradleak run folder" in err and err.count("\n") == 1
    assert (out_dir / "notes.txt").read_text() == "mine"
    assert (out_dir / "config.json").read_text() == '{"my": "config"}'
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "notes.txt"]


def test_overwrite_replaces_only_gradleaks_own_files(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert run(capsys, "attack", "ig", *FAST, "--out", str(out_dir), "--save-tensors")[0] == 0
    (out_dir / "notes.txt").write_text("mine")
    first = (out_dir / "config.json").read_text()
    code, _, _ = run(capsys, "attack", "ig", *FAST, "--seed", "1", "--out", str(out_dir), "--overwrite")
    assert code == 0 and (out_dir / "notes.txt").read_text() == "mine"
    assert (out_dir / "config.json").read_text() != first
    assert not (out_dir / "tensors.safetensors").exists()  # the earlier run's file, not rewritten: removed
    assert sorted(p.name for p in out_dir.iterdir()) == [
        ".gradleak-run", "config.json", "metrics.json", "notes.txt", "reconstruction.png"]


def _saved_update(tmp_path, corrupt: str | None = None):
    from gradleak.data import load_dataset, sample_batch
    from gradleak.fl import fedsgd_update
    from gradleak.models import build_model

    ds = load_dataset("digits")
    truth = sample_batch(ds, 1, seed=0)
    model = build_model("convnet", shape=ds.shape, num_classes=10, seed=0)
    update = fedsgd_update(model, truth.inputs, truth.labels)
    tensors = dict(update.tensors)
    if corrupt == "nan":
        first = next(iter(tensors))
        tensors[first] = tensors[first].clone()
        tensors[first].view(-1)[0] = float("nan")
    update = update.with_tensors(tensors)
    path = tmp_path / "update.safetensors"
    save_update(update, path)
    return path


def test_attack_a_saved_update(tmp_path, capsys):
    path = _saved_update(tmp_path)
    code, out, _ = run(capsys, "attack", "ig", *FAST, "--update", str(path), "--labels", "restore",
                       "--json", "--out", str(tmp_path / "r"))
    assert code == 0 and json.loads(out)["num_examples"] == 1
    assert (tmp_path / "r" / "reconstruction.png").is_file()


@pytest.mark.parametrize(("corrupt", "model", "match"), [
    ("nan", "convnet", "NaN or inf"), (None, "mlp", "does not fit the model"),
])
def test_bad_saved_update_one_line_exit_2(tmp_path, capsys, corrupt, model, match):
    path = _saved_update(tmp_path, corrupt)
    argv = ["attack", "ig", "--dataset", "digits", "--model", model, "--update", str(path),
            "--labels", "restore", "--no-progress", "--out", str(tmp_path / "r")]
    code, _, err = run(capsys, *argv)
    assert code == 2 and match in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_list_json(capsys):
    code, out, _ = run(capsys, "list", "--json")
    listing = json.loads(out)
    assert code == 0 and {"dlg", "idlg", "ig"} <= set(listing["attacks"])
    assert {"mnist", "digits"} <= set(listing["datasets"]) and "convnet" in listing["models"]


def test_torch_state_untouched_by_cli(tmp_path, capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run(capsys, "attack", "ig", *FAST, "--out", str(tmp_path / "r"))
    assert torch.equal(torch.rand(3), expected)


def test_saved_update_uses_the_checkpoint(tmp_path, capsys):
    from safetensors.torch import save_file

    from gradleak.models import build_model

    path = _saved_update(tmp_path)
    wide = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0, width=8)
    ckpt = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(ckpt))
    argv = ["attack", "ig", *FAST, "--update", str(path), "--labels", "restore", "--checkpoint", str(ckpt),
            "--out", str(tmp_path / "r")]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "checkpoint" in err and not (tmp_path / "r").exists()


@pytest.mark.crash_handler
def test_an_unexpected_error_is_reported_as_a_bug_with_its_traceback_saved(tmp_path, capsys, monkeypatch):
    import importlib

    cli_main = importlib.import_module("gradleak.cli.main")
    monkeypatch.setenv("GRADLEAK_CACHE", str(tmp_path / "cache"))

    def broken(args):
        raise RuntimeError("an internal slip\nsecond line")

    monkeypatch.setitem(cli_main.COMMANDS, "list", broken)
    code, out, err = run(capsys, "list")
    assert code == 1 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "a bug in gradleak" in err and "RuntimeError: an internal slip" in err
    saved = list((tmp_path / "cache" / "crash").iterdir())
    assert len(saved) == 1 and str(saved[0]) in err
    text = saved[0].read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text


def test_a_flag_and_a_pair_setting_the_same_option_are_refused(capsys):
    code, _, err = run(capsys, "attack", "ig", *FAST, "-p", "steps=3")
    assert code == 2 and "steps is set twice: --steps 5 and -p steps=3" in err
    code, _, err = run(capsys, "attack", "ig", "--model-option", "width=3", "--model-option", "width=4")
    assert code == 2 and "width is given twice" in err
