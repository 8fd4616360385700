"""Run folders and output files: gradleak's own (marked), staged, renamed into place, checked first."""

from __future__ import annotations

import json

import pytest

from gradleak.core.errors import OutputExistsError, OutputPathError
from gradleak.experiment import Scenario, run_scenario
from gradleak.experiment.outputs import MARKER, RunFolder, check_output_file, read_marker, write_file

TINY = Scenario(attack="ig", dataset="digits", model="mlp", attack_options={"steps": 2})


def test_new_run_folder_appears_whole_with_its_marker(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    with RunFolder(out, overwrite=False) as run:
        run.write_bytes("config.json", b"{}")
        assert not out.exists()  # staged beside it until the commit
        run.commit()
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "config.json"]
    assert read_marker(out) == {"config.json"}
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["run"]  # no staging left


def test_a_failed_run_leaves_nothing_not_even_the_parents_it_made(tmp_path):
    out = tmp_path / "new" / "deeper" / "run"
    with pytest.raises(RuntimeError), RunFolder(out, overwrite=False) as run:
        run.write_bytes("config.json", b"{}")
        raise RuntimeError("the attack failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, MemoryError])
def test_interrupted_scenario_leaves_no_half_written_folder(tmp_path, monkeypatch, interrupt):
    import gradleak.experiment.run as run_module

    def boom(*args, **kwargs):
        raise interrupt()

    monkeypatch.setattr(run_module, "evaluate", boom)  # after the attack, before the folder is written
    with pytest.raises(interrupt):
        run_scenario(TINY, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_refuses_a_users_folder_and_leaves_it_untouched(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("my config")
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(OutputExistsError, match=r"not a gradleak run folder .* left untouched"):
        run_scenario(TINY, mine, overwrite=True)
    assert {p.name: p.read_text() for p in mine.iterdir()} == {"config.json": "my config", "notes.txt": "my notes"}


def test_overwrite_replaces_only_listed_files_and_refuses_unlisted_ones(tmp_path):
    out = tmp_path / "run"
    run_scenario(TINY, out)
    (out / "notes.txt").write_text("mine")
    (out / "tensors.safetensors").write_text("my own tensors")  # not listed in the marker
    with pytest.raises(OutputExistsError, match="was not written by gradleak"):
        run_scenario(TINY, out, overwrite=True, save_tensor_file=True)
    assert (out / "tensors.safetensors").read_text() == "my own tensors"
    (out / "tensors.safetensors").unlink()
    result = run_scenario(TINY, out, overwrite=True, save_tensor_file=True)
    assert result.out_dir == str(out) and (out / "notes.txt").read_text() == "mine"
    assert read_marker(out) == {"config.json", "metrics.json", "reconstruction.png", "tensors.safetensors"}
    assert json.loads((out / "config.json").read_text())["scenario"]["seed"] == 0


def test_a_run_file_that_is_a_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    import gradleak.experiment.run as run_module

    out = tmp_path / "run"
    run_scenario(TINY, out)
    (out / "reconstruction.png").unlink()
    (out / "reconstruction.png").mkdir()
    monkeypatch.setattr(run_module, "prepare_model", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(OutputExistsError, match="not a regular file"):
        run_scenario(TINY, out, overwrite=True)


@pytest.mark.parametrize(("where", "match"), [
    ("under_file", "which is a file"), ("long_name", "bytes long"), ("proc", "cannot"),
])
def test_unwritable_out_fails_before_any_work(tmp_path, monkeypatch, where, match):
    import gradleak.experiment.run as run_module

    (tmp_path / "afile").write_text("x")
    path = {"under_file": tmp_path / "afile" / "run", "long_name": tmp_path / ("x" * 300),
            "proc": "/proc/gradleak-run"}[where]
    monkeypatch.setattr(run_module, "prepare_model", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(OutputPathError, match=match):
        run_scenario(TINY, path)
    assert (tmp_path / "afile").read_text() == "x"


def test_output_file_checks_and_atomic_write(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output_file(target, overwrite=False)
    with pytest.raises(OutputExistsError, match="is a folder"):
        check_output_file(tmp_path, overwrite=True)
    with pytest.raises(OutputExistsError):
        write_file(target, "new", overwrite=False)
    assert target.read_text() == "mine"
    write_file(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_report_refuses_an_existing_file_unless_overwrite(tmp_path, capsys):
    from gradleak.cli import main
    from gradleak.sweep.store import Store

    db = tmp_path / "r.sqlite"
    Store(db).close()
    out = tmp_path / "report.html"
    out.write_text("my report")
    assert main(["report", str(db), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists; pass --overwrite" in err and err.count("\n") == 1
    assert out.read_text() == "my report"
    assert main(["report", str(db), "-o", str(out), "--overwrite"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
