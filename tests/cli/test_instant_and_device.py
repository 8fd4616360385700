"""An instant CLI (nothing heavy imported for --help and list) and ``--device`` errors on one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SRC = str(Path(__file__).resolve().parents[2] / "src")
HEAVY = ("torch", "numpy", "gradleak.attacks", "gradleak.models", "gradleak.data", "gradleak.inversion")


def python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def heavy_after(code: str) -> list[str]:
    out = python(code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))")
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    return [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]


def test_import_gradleak_imports_nothing_heavy_until_a_name_is_used():
    assert heavy_after("import gradleak") == []
    assert "torch" in heavy_after("import gradleak\ngradleak.build_model")


def test_dir_lists_the_public_names_not_the_lazy_loaders_helpers():
    out = python("import gradleak, json\nprint(json.dumps(dir(gradleak)))")
    names = json.loads(out.stdout)
    import gradleak

    assert set(gradleak.__all__) <= set(names) and not {"Any", "TYPE_CHECKING", "importlib"} & set(names)


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "attacks", "--json"], ["attack", "--help"],
                                  ["sweep", "--help"], ["prior", "train", "--help"]])
def test_help_and_list_import_neither_torch_nor_attacks(argv):
    code = ("import contextlib, io\nfrom gradleak.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass")
    assert heavy_after(code) == []


def test_list_describes_every_builtin_and_user_entries(capsys):
    from gradleak.cli import main
    from gradleak.core.builtins import ATTACKS
    from gradleak.core.registry import register_attack

    @register_attack("zz-test-listing")
    class Mine:
        """My own attack, described by its docstring."""

    try:
        assert main(["list", "attacks", "--json"]) == 0
        listing = json.loads(capsys.readouterr().out)["attacks"]
    finally:
        from gradleak.core.registry import ATTACKS as REGISTRY

        REGISTRY._entries.pop("zz-test-listing")
    assert set(ATTACKS) < set(listing) and all(listing.values())
    assert listing["zz-test-listing"] == "My own attack, described by its docstring."


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("argv", [
    ["attack", "ig", "--dataset", "digits", "--steps", "2", "--device", "cuda"],
    ["attack", "ig", "--dataset", "digits", "--steps", "2", "--device", "cuda:3"],
    ["sweep", "grid.toml", "--device", "cuda"],
    ["prior", "train", "--out", "x.safetensors", "--device", "cuda"],
    ["attack", "ig", "--device", "tpu"],
])
def test_a_missing_or_unknown_device_is_one_line_and_exit_2(tmp_path, argv):
    if argv[0] == "sweep":
        argv[1] = str(tmp_path / "grid.toml")
        Path(argv[1]).write_text('[base]\nattack = "ig"\ndataset = "digits"\nmodel = "mlp"\nsteps = 2\n')
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-m", "gradleak.cli", *argv], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("gradleak: error:") and "device" in lines[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results.sqlite").exists()
