"""Fuzz the command line with a seeded table of bad inputs: each must be one clear error and nothing else.

Every case runs ``gradleak.cli.main(argv)`` in this process and must: exit 2; print on stderr one
``gradleak: error:`` line (a grid's problem list may follow as ``  - `` lines) and nothing on
stdout; show no traceback; never reach the crash handler (the suite's conftest fails the test);
change no file under the hostile root (user files, databases, reports untouched; no run folder,
no staging folder, no WAL file). The table covers every input kind of issue 16: ``KEY=VALUE``
values, numbers out of range, update files, checkpoints, datasets, grids, output paths, the
results database, backends, and generator files.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from pathlib import Path

import hostile
import pytest

from gradleak.cli import main

FAST = ["--dataset", "digits", "--model", "convnet", "--steps", "2", "--no-progress"]
SLOTS = [("-p", "steps="), ("-p", "restarts="), ("-p", "lr="), ("-p", "tv="), ("--model-option", "width="),
         ("--defense", "noise:sigma="), ("--defense", "quantize:bits="), ("--defense", "prune:ratio="),
         ("--defense", "clip:norm=")]
BAD_VALUES = ["abc", "nan", "inf", "-inf", "", "1,2", "true", "-1", "1e400", "0x10", "[1]", "1e9.5"]


def _value_cases() -> list[tuple[str, list[str]]]:
    """Every KEY=VALUE slot × every bad value (108 cases); ``--steps 2`` unless the slot is steps."""
    return [(f"{flag}{key}{value!r}", [*(["--steps", "2"] if key != "steps=" else []), flag, f"{key}{value}"])
            for (flag, key), value in itertools.product(SLOTS, BAD_VALUES)]


def _number_cases() -> list[tuple[str, list[str]]]:
    fedavg = ["--protocol", "fedavg"]
    return [(f"{' '.join(a)}", a) for a in (
        ["--seed", "-1"], ["--seed", str(2**62 + 1)], ["--seed", "99999999999999999999"],
        ["--batch-size", "0"], ["--batch-size", "-3"], ["--batch-size", str(10**9)],
        [*fedavg, "--local-lr", "nan"], [*fedavg, "--local-lr", "inf"], [*fedavg, "--local-lr", "-0.1"],
        [*fedavg, "--local-lr", "0"], [*fedavg, "--local-epochs", "0"], [*fedavg, "--local-epochs", "1001"],
        [*fedavg, "--local-batch-size", "0"], [*fedavg, "--local-steps", "0"], [*fedavg, "--local-steps", str(10**8)],
        ["--model-state", "trained:0"], ["--model-state", "trained:-1"], ["--model-state", "trained:99999999"],
        ["--model-state", "trained:x"], ["--model-state", "trained:1e3"], ["--model-state", "trained:\u0661"],
        ["--model-state", "trained:2", "--checkpoint", "x.pt"], ["--restarts", "0"], ["--restarts", "5000"],
        ["--steps", "0"], ["--steps", str(10**8)], ["--model-option", "width=100000"],
        ["--model", "mlp", "--model-option", "widths=1000000,1000000"], ["--model-option", "std=0"],
        ["--model-option", "mean=nan"], ["--model-option", "colour=red"], ["--norm", "sideways"],
        ["--model", "resnet20", "--norm", "sideways"], ["--label-mode", "sideways"], ["--mode", "sideways"],
        ["--labels", "nope"],
        ["--defense", "nope"], ["--defense", ":x=1"], ["--defense", "noise:sigma"], ["--param", "=3"],
        ["--label-map", "x"], ["-p", "steps=3"], ["--model-option", "width=3", "--model-option", "width=4"],
        ["--defense", "noise:sigma=0.1,sigma=0.2"],
        ["--model", "resnet20", "--norm", "bn", "--model-option", "norm=gn"],
    )]


def _file_cases(fx) -> list[tuple[str, list[str]]]:
    upd = ["--labels", "restore", "--update"]
    cases = [(f"update {name}", [*upd, str(path)]) for name, path in fx.updates.items()]
    cases += [("update weight delta + bad local lr", [*upd, str(fx.updates["n_float"]), "--update-kind",
                                                       "weight_delta", "--local-lr", "nan"])]
    cases += [(f"checkpoint {name}", ["--checkpoint", str(path)]) for name, path in fx.ck.items()]
    cases += [(f"cifar {name}", ["--dataset", "cifar10", "--data-dir", str(d)]) for name, d in fx.cifar.items()]
    cases += [(f"idx {name}", ["--dataset", "mnist-idx", "--data-dir", str(d)]) for name, d in fx.idx.items()]
    cases += [(f"images {name}", ["--dataset", "imagefolder", "--data-dir", str(d)]) for name, d in fx.images.items()]
    cases += [("data-dir a file", ["--dataset", "cifar10", "--data-dir", str(fx.afile)]),
              ("data-dir missing", ["--dataset", "cifar10", "--data-dir", str(fx.root / "nowhere")]),
              ("data-dir for an embedded dataset", ["--data-dir", str(fx.root)]),
              ("no data-dir for cifar", ["--dataset", "cifar10"])]
    return cases


def _output_cases(fx) -> list[tuple[str, list[str]]]:
    ig = ["attack", "ig", *FAST]
    tiny = str(fx.grids["width"].with_name("ok.toml"))
    sweep = ["sweep", tiny, "--no-progress", "--workers", "0"]
    return [
        ("--out under a file", [*ig, "--out", str(fx.afile / "run")]),
        ("--out under /proc", [*ig, "--out", "/proc/gradleak-run"]),
        ("--out a 300-character name", [*ig, "--out", str(fx.root / ("x" * 300))]),
        ("--out a NUL byte", [*ig, "--out", str(fx.root / "a\x00b")]),
        ("--out an existing file", [*ig, "--out", str(fx.afile)]),
        ("--out a user's folder", [*ig, "--out", str(fx.user)]),
        ("--overwrite a user's folder", [*ig, "--out", str(fx.user), "--overwrite"]),
        ("--overwrite reconstruction.png a folder", [*ig, "--out", str(fx.png_dir), "--overwrite"]),
        ("--overwrite an unlisted tensors file", [*ig, "--out", str(fx.foreign_tensors), "--overwrite",
                                                  "--save-tensors"]),
        ("update --out under a file", ["attack", "ig", *FAST, "--update", str(fx.updates["nan"]), "--out",
                                       str(fx.afile / "r")]),
        ("report -o an existing file", ["report", str(fx.db_runs), "-o", str(fx.report)]),
        ("report -o a folder", ["report", str(fx.db_runs), "-o", str(fx.root)]),
        ("report -o under a file", ["report", str(fx.db_runs), "-o", str(fx.afile / "r.html")]),
        ("report of a user's SQLite", ["report", str(fx.db_runs), "--format", "md"]),
        ("report of a text file", ["report", str(fx.textdb), "--format", "csv"]),
        ("report of a folder", ["report", str(fx.root), "--format", "csv"]),
        ("--db under a file", [*sweep, "--db", str(fx.afile / "r.sqlite")]),
        ("--db a folder", [*sweep, "--db", str(fx.root)]),
        ("--db a user's SQLite with runs", [*sweep, "--db", str(fx.db_runs)]),
        ("--db a user's SQLite", [*sweep, "--db", str(fx.db_other)]),
        ("--db a text file", [*sweep, "--db", str(fx.textdb)]),
        ("--db an empty file", [*sweep, "--db", str(fx.emptydb)]),
        ("--db a newer gradleak's", [*sweep, "--db", str(fx.db_newer)]),
        ("--dry-run --db a user's SQLite", [*sweep, "--db", str(fx.db_runs), "--dry-run"]),
        ("sweep --report an existing file", [*sweep, "--db", str(fx.root / "new.sqlite"), "--report",
                                             str(fx.report)]),
        ("sweep --report a folder", [*sweep, "--db", str(fx.root / "new.sqlite"), "--report", str(fx.root)]),
        ("--workers -1", [*sweep, "--db", str(fx.root / "new.sqlite"), "--workers", "-1"]),
        ("--workers 100000", [*sweep, "--db", str(fx.root / "new.sqlite"), "--workers", "100000"]),
        ("--cpus-per-run 0", [*sweep, "--db", str(fx.root / "new.sqlite"), "--cpus-per-run", "0"]),
        ("--address with local", [*sweep, "--db", str(fx.root / "new.sqlite"), "--address", "auto"]),
        ("--max-runs 0", [*sweep, "--db", str(fx.root / "new.sqlite"), "--max-runs", "0", "--dry-run"]),
        ("--preset unknown", [*sweep, "--db", str(fx.root / "new.sqlite"), "--preset", "nope", "--dry-run"]),
        ("generator an evil pickle (ggl)", ["attack", "ggl", *FAST, "-p", f"generator={fx.ck['evil.pt']}"]),
        ("generator an evil pickle (gifd)", ["attack", "gifd", *FAST, "-p", f"generator={fx.ck['evil.pt']}"]),
        ("generator an empty file", ["attack", "ggl", *FAST, "-p", f"generator={fx.ck['empty.pt']}"]),
        ("generator missing", ["attack", "ggl", *FAST, "-p", "generator=/no/such/gen.pt"]),
        ("generator a model checkpoint", ["attack", "ggl", *FAST, "-p", f"generator={fx.ck['wide.safetensors']}"]),
        ("grid missing", ["sweep", str(fx.root / "nope.toml"), "--dry-run"]),
        ("grid a folder", ["sweep", str(fx.root), "--dry-run"]),
    ] + [(f"grid {name}", ["sweep", str(path), "--dry-run"]) for name, path in fx.grids.items()]


USER_MODELS = """import torch
def raises(shape, num_classes):
    raise ValueError("bad width")
def not_module(shape, num_classes):
    return 42
def no_params(shape, num_classes):
    return torch.nn.Flatten()
def wrong_shape(shape, num_classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(7, num_classes))
def few_classes(shape, num_classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(shape[0] * shape[1] * shape[2], 3))
def ok(shape, num_classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(shape[0] * shape[1] * shape[2], num_classes))
"""


def _model_cases(fx) -> list[tuple[str, list[str]]]:
    """``--model FILE.py:FACTORY`` that cannot work, through ``attack``, ``check`` and a grid."""
    net, m = fx.models / "net.py", fx.models
    specs = {"missing file": f"{m / 'nope.py'}:build", "missing factory": f"{net}:missing",
             "factory raises": f"{net}:raises", "returns an int": f"{net}:not_module",
             "no parameters": f"{net}:no_params", "wrong input size": f"{net}:wrong_shape",
             "too few classes": f"{net}:few_classes", "import fails": f"{m / 'badimport.py'}:build",
             "syntax error": f"{m / 'syntax.py'}:build", "no file name": ":build",
             "relative module": "..x:build", "not a factory": "os.path:join", "a text file": f"{fx.afile}:build"}
    cases = [(f"attack {k}", ["attack", "ig", *FAST, "--model", v]) for k, v in specs.items()]
    cases += [("attack unknown option", ["attack", "ig", *FAST, "--model", f"{net}:ok", "--model-option", "width=3"])]
    cases += [(f"check {k}", ["check", "--dataset", "digits", "--model", specs[k]])
              for k in ("factory raises", "returns an int", "wrong input size", "missing factory")]
    return cases + [(f"grid {k}", ["sweep", str(fx.models / f"{k}.toml"), "--dry-run"]) for k in ("raises", "missing")]


def _check_cases(fx) -> list[tuple[str, list[str]]]:
    """``gradleak check`` refuses what ``attack`` refuses, before any work."""
    check = ["check", "--dataset", "digits"]
    return [(f"check {' '.join(a)}", [*check, *a]) for a in (
        ["--labels", "nope"], ["--batch-size", "0"], ["--protocol", "fedavg", "--local-lr", "nan"],
        ["--protocol", "fedavg", "--local-epochs", "0"], ["--update", str(fx.root / "nope.safetensors")],
        ["--update", str(fx.afile)], ["--update", str(fx.updates["zeros"])], ["--seed", "-1"],
        ["--defense", "noise:sigma=abc"], ["--model-state", "trained:0"], ["--checkpoint", str(fx.root)],
        ["--checkpoint", str(fx.ck["empty.pt"])], ["--mode", "sideways"], ["--label-mode", "x"],
        ["--model", "nope"], ["--model-option", "width=-4"], ["--dataset", "nope"])]


def _flower_cases(fx) -> list[tuple[str, list[str]]]:
    """``gradleak flower-demo`` numbers and names: refused before a folder or a simulation exists."""
    demo = ["flower-demo", "--out", str(fx.root / "fl")]
    return [(f"flower {' '.join(a)}", [*demo, *a]) for a in (
        ["--workers", "0"], ["--workers", "-3"], ["--rounds", "0"], ["--clients", "0"], ["--clients", "5000"],
        ["--examples-per-client", "0"], ["--local-epochs", "0"], ["--local-lr", "nan"], ["--local-lr", "-1"],
        ["--local-momentum", "1.5"], ["--local-momentum", "-1"],
        ["--local-optimizer", "adam", "--local-momentum", "0.9"],
        ["--local-weight-decay", "-1"], ["--proximal-mu", "inf"], ["--local-batch-size", "-2"],
        ["--attack-seconds", "-1"], ["--round-seconds", "nan"], ["--seed", "-1"], ["--attack", "nope"],
        ["-p", "steps=abc"], ["--steps", "0"], ["--defense", "noise:sigma=abc"], ["--defense", "nope"],
        ["--model", "nope"], ["--dataset", "nope"], ["--out", "/proc/gradleak-fl"], ["--out", str(fx.afile)],
        ["--out", str(fx.user), "--overwrite"])]


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    built = hostile.build_all(root)
    (root / "ok.toml").write_text(hostile.TINY_BASE)
    models = tmp_path_factory.mktemp("usermodels")  # outside root: importing may write __pycache__
    (models / "net.py").write_text(USER_MODELS)
    (models / "badimport.py").write_text("import gradleak_no_such_package\n")
    (models / "syntax.py").write_text("def build(:\n")
    (models / "raises.toml").write_text(hostile.TINY_BASE.replace('"mlp"', f'"{models / "net.py"}:raises"'))
    (models / "missing.toml").write_text(hostile.TINY_BASE.replace('"mlp"', f'"{models / "nope.py"}:build"'))
    built.models = models
    return built


def _all_cases(fx) -> list[tuple[str, list[str]]]:
    ig = ["attack", "ig", *FAST]
    cases = [(f"value {n}", ["attack", "ig", "--dataset", "digits", "--model", "convnet", "--no-progress", *a])
             for n, a in _value_cases()]
    cases += [(f"number {n}", [*ig, *a]) for n, a in _number_cases()]
    cases += [(f"file {n}", [*ig, *a]) for n, a in _file_cases(fx)]
    cases += [(f"output {n}", a) for n, a in _output_cases(fx)]
    cases += [(f"model {n}", a) for n, a in _model_cases(fx)]
    cases += [(n, a) for n, a in _check_cases(fx) + _flower_cases(fx)]
    return cases


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size, modification time and inode (any write changes
    them); small files also by content hash (the databases and user files)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and st.st_size < 2**20 else ""
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns, st.st_ino, digest)
    return out


def _check(code: int, out: str, err: str) -> str | None:
    lines = err.splitlines()
    if code != 2:
        return f"exit {code}"
    if "Traceback" in err or out:
        return "a traceback or output on stdout"
    if not lines or not lines[0].startswith("gradleak: error: ") or any(not ln.startswith("  - ") for ln in lines[1:]):
        return "not one error line (plus a grid's problem list)"
    return None


def test_fuzz_cli_every_bad_input_is_one_clear_error(fx, capsys, monkeypatch):
    monkeypatch.chdir(fx.root)  # default run folders would land here: the snapshot would see them
    cases = _all_cases(fx)
    random.Random(16).shuffle(cases)  # a seeded order: no case may depend on another's leftovers
    assert len(cases) >= 150 + 100, len(cases)
    before = _snapshot(fx.root)
    failures = []
    for name, argv in cases:
        argv = [*argv, "--out", str(fx.root / "out")] if argv[0] == "attack" and "--out" not in argv else argv
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse refuses a value of the wrong type itself, exit 2
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        why = _check(code, out, err)
        after = _snapshot(fx.root)
        if after != before:
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            why = (why or "") + f" changed {changed[:3]}"
            before = after
        if why:
            failures.append(f"{name}: {why}: {err.strip()[:300]}")
    assert not Path("/tmp/gradleak-pwned").exists(), "an evil pickle ran"
    assert failures == [], f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)
    print(f"{len(cases)} CLI cases, 0 failures")


def test_fuzz_table_is_seeded_and_covers_every_kind(fx):
    names = [n for n, _ in _all_cases(fx)]
    assert len(names) == len(set(names))
    for kind in ("value", "number", "file update", "file checkpoint", "file cifar", "file idx", "file images",
                 "output --out", "output --db", "output report", "output grid", "output --workers",
                 "model attack", "model check", "model grid", "check ", "flower "):
        assert any(n.startswith(kind) for n in names), kind
