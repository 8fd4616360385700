"""A researcher's first hour: their own model and update in one command, the fit and its warning,
gradleak check, attack help, readable figures and tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from gradleak.cli import main
from gradleak.experiment.update_io import save_update
from gradleak.experiment.user_model import build_user_model
from gradleak.fl import fedsgd_update

EXAMPLE = Path(__file__).parents[2] / "examples" / "user_model" / "model.py"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def client(tmp_path, digits):
    """A user's model file, the checkpoint the client trained from and its saved update (digits, b=2)."""
    model_file = tmp_path / "net.py"
    shutil.copy(EXAMPLE, model_file)
    spec = f"{model_file}:build"
    model = build_user_model(spec, shape=(1, 8, 8), num_classes=10, seed=7)
    with torch.no_grad():  # weights the server's seeded init cannot produce
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "ckpt.safetensors"))
    x, y = digits.inputs[:2], digits.labels[:2]
    save_update(fedsgd_update(model, x, y, mode="eval"), tmp_path / "update.safetensors")
    return {"spec": spec, "ckpt": str(tmp_path / "ckpt.safetensors"), "update": str(tmp_path / "update.safetensors"),
            "labels": y.tolist(), "dir": tmp_path}


def test_user_model_checkpoint_and_update_in_one_command(client, capsys):
    out = client["dir"] / "attack"
    code, stdout, _ = run(capsys, "attack", "ig", "--model", client["spec"], "--checkpoint", client["ckpt"],
                          "--update", client["update"], "--dataset", "digits", "--labels", "restore",
                          "--steps", "5", "--json", "--no-progress", "--out", str(out))
    summary = json.loads(stdout)
    assert code == 0 and summary["num_examples"] == 2 and summary["model_state"]["state"] == "checkpoint"
    assert sorted(summary["labels"]) == sorted(client["labels"])
    # the fit of the truth itself would be 0; any reconstruction's fit is a number, with a verdict
    assert summary["fit"]["cosine_distance"] >= 0 and isinstance(summary["fit"]["poor"], bool)
    assert json.loads((out / "metrics.json").read_text())["fit"] == summary["fit"]


def test_wrong_weights_print_the_warning_and_the_figure(client, capsys):
    code, stdout, err = run(capsys, "attack", "ig", "--model", client["spec"], "--update", client["update"],
                            "--dataset", "digits", "--labels", "restore", "--steps", "5", "--no-progress",
                            "--out", str(client["dir"] / "wrong"))
    assert code == 0
    assert "warning: the reconstruction explains the update poorly" in err
    assert "weights are not the ones the client trained from" in err and "--checkpoint" in err
    assert "fit: cos dist" in stdout.replace("\n", " ") or "fit: cos" in stdout


def test_metrics_json_has_true_and_recovered_labels_and_a_large_labelled_png(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, _ = run(capsys, "attack", "ig", "--dataset", "digits", "--model", "convnet", "--batch-size", "3",
                     "--steps", "3", "--no-progress", "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert code == 0 and metrics["labels"]["paired"]
    assert sorted(metrics["labels"]["true"]) == sorted(metrics["labels"]["recovered"])
    assert "lpips" not in metrics["metrics"]
    png = Image.open(out / "reconstruction.png")
    assert png.size[0] >= 3 * 112 and png.size[1] >= 2 * 112   # 8×8 digits enlarged to be judged


def test_check_command_mlp_and_saved_update(client, capsys):
    code, stdout, _ = run(capsys, "check", "--model", "mlp", "--model-option", "widths=100", "--dataset", "digits",
                          "--batch-size", "4", "--json")
    report = json.loads(stdout)
    rows = {r["name"]: r for r in report["attacks"]}
    assert code == 0 and rows["spear"]["applies"] and not rows["fedavg-unrolled"]["applies"]
    assert report["model"]["true_labels"] is not None
    code, stdout, _ = run(capsys, "check", "--model", client["spec"], "--checkpoint", client["ckpt"],
                          "--update", client["update"], "--dataset", "digits")
    assert code == 0 and "spear" in stdout and "BatchNorm yes" in stdout
    assert "what each attack assumes" in stdout


def test_attack_help_shows_options_defaults_presets_and_requirements(capsys):
    code, stdout, _ = run(capsys, "attack", "ig", "--help")
    assert code == 0
    for text in ("steps = 1000", "tv = 'auto'", "presets:", "tiny", "requires:", "the labels (known, or restored"):
        assert text in stdout, text
    code, stdout, _ = run(capsys, "list", "attacks", "--verbose")
    assert code == 0 and all(f"{name} — " in stdout for name in ("dlg", "spear", "gifd"))
    assert "max_seconds = 300.0" in stdout and "sampled row subsets" in stdout


def test_a_paper_preset_is_shown_when_declared(capsys):
    from gradleak.attacks.ig import InvertingGradients
    from gradleak.cli.attack_help import format_attack
    from gradleak.core.registry import ATTACKS

    class WithPaper(InvertingGradients):
        presets = {"tiny": {"steps": 3}, "paper": {"steps": 4800, "restarts": 8}}

    ATTACKS.register("ig-with-paper-preset")(WithPaper)
    try:
        text = format_attack("ig-with-paper-preset", width=100)
    finally:
        ATTACKS._entries.pop("ig-with-paper-preset")
    assert "paper (the paper's settings): steps=4800, restarts=8" in text and "no 'paper' preset" not in text


def test_list_descriptions_have_no_raw_markup(capsys):
    code, stdout, _ = run(capsys, "list", "labels", "--json")
    assert code == 0 and "``" not in stdout and ":class:" not in stdout
