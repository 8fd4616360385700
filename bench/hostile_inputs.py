"""Re-run every example of issue 16's list (bad input, lost data, signals) and count what still fails.

Each case passes only when the CLI exits 2 with one ``gradleak: error:`` line (or the API raises a
``GradleakError``), shows no traceback, changes no file outside its run folder, and meets the
case's own check (untouched user files, a byte-identical database, no orphan process, ...).

Run: ``python bench/hostile_inputs.py`` (about 3 minutes; writes ``docs/results/hostile_inputs.md``)
or ``python bench/hostile_inputs.py --no-write`` to print only. The before/after pair in
``docs/results``: ``PYTHONPATH=OLD/src python bench/hostile_inputs.py --label "main 532322f"
--out docs/results/hostile_inputs_before.md``, then ``PYTHONPATH=src python bench/hostile_inputs.py
--label "issue-16" --compare docs/results/hostile_inputs_before.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cli"))
import hostile as fx  # noqa: E402 - the hostile files the fuzz test uses too

from hostile_procs import ray_running, session_alive, snapshot, wait_busy  # noqa: E402

FAST = ["--dataset", "digits", "--model", "convnet", "--steps", "2", "--no-progress"]


def run_cli(argv: list[str]) -> tuple[Any, str, str]:
    """``gradleak.cli.main(argv)`` in this process: (exit status or 'exception', stdout, stderr)."""
    from gradleak.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: Any = main(argv)
        except SystemExit as exc:
            code = exc.code
        except BaseException:  # noqa: BLE001 - a traceback is exactly what we are counting
            code = "exception"
            err.write(traceback.format_exc())
    return code, out.getvalue(), err.getvalue()


def expect_exit_2(code: Any, err: str, must: str = "", must_not: str = "") -> str | None:
    """Why a CLI outcome is not a clean one-line refusal (None when it is)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if code != 2:
        return f"exit {code}: {err.strip().splitlines()[-1][:160] if err.strip() else ''}"
    if "Traceback" in err or not lines or not lines[0].startswith("gradleak: error:") or any(
            not ln.startswith("  - ") for ln in lines[1:]):  # a grid's list of problems may follow
        return f"not one error line: {err[:160]!r}"
    if must and must.lower() not in err.lower():
        return f"message lacks {must!r}: {lines[0][:160]}"
    if must_not and must_not in err:
        return f"message still says {must_not!r}: {lines[0][:160]}"
    return None


def expect_error(fn: Callable[[], Any], must: str = "") -> str | None:
    """Why an API call did not raise a GradleakError naming ``must`` (None when it did)."""
    from gradleak.core.errors import GradleakError

    try:
        fn()
    except GradleakError as err:
        return None if must.lower() in str(err).lower() else f"message lacks {must!r}: {err}"
    except Exception as err:  # noqa: BLE001
        return f"untyped {type(err).__name__}: {str(err)[:120]}"
    return "accepted silently"


def cli_cases(root: Path) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(what, argv, options) for every CLI example; options: must, must_not, out, check."""
    user = fx.user_run_dir(root)
    afile = root / "afile"
    afile.write_text("a file")
    report = root / "report.html"
    report.write_text("<p>my report</p>")
    db_runs, db_other = fx.user_sqlite(root, runs_table=True), fx.user_sqlite(root, runs_table=False)
    ck = fx.checkpoints(root)
    g = fx.grids(root, seeds=300_000)
    g["tiny"] = fx.grid(root, "tiny", fx.TINY_BASE + "[grid]\nseed = [0, 1]\n")
    marked = root / "png-dir"
    (marked / "reconstruction.png").mkdir(parents=True)
    ig = ["attack", "ig", *FAST]
    upd = ["attack", "ig", *FAST, "--labels", "restore", "--update"]
    bad_meta = {n: fx.update_file(root, n, m) for n, m in (
        ("json", "{not json"), ("n_abc", '{"num_examples": "abc"}'), ("n_float", '{"num_examples": 1.5}'),
        ("lt_list", '{"num_examples": 2, "kind": "weight_delta", "local_training": [0.1, 1]}'),
        ("lt_keys", '{"num_examples": 2, "kind": "weight_delta", "local_training": {"lr": 0.1, "mom": 1}}'))}
    return [
        ("--overwrite a user's folder (config.json, notes.txt)", [*ig, "--out", str(user), "--overwrite"],
         {"out": None, "must": "not a gradleak run folder"}),
        ("report -o an existing file", ["report", str(db_runs), "-o", str(report)], {}),
        ("--db a user's SQLite with a runs table", ["sweep", str(g["tiny"]), "--db", str(db_runs),
                                                    "--no-progress"], {"check": lambda: _no_wal(db_runs)}),
        ("--db a user's SQLite without a runs table", ["sweep", str(g["tiny"]), "--db", str(db_other),
                                                       "--no-progress"], {"check": lambda: _no_wal(db_other)}),
        ("--out under a file", [*ig, "--out", str(afile / "run")], {}),
        ("--out under /proc", [*ig, "--out", "/proc/gradleak-run"], {}),
        ("--out with a 300-character name", [*ig, "--out", str(root / ("x" * 300))], {}),
        ("--overwrite where reconstruction.png is a folder", [*ig, "--out", str(marked), "--overwrite"], {}),
        ("report -o a folder", ["report", str(db_runs), "-o", str(root)], {}),
        ("--db under a file", ["sweep", str(g["tiny"]), "--db", str(afile / "r.sqlite"), "--no-progress"], {}),
        ("--defense noise:sigma=abc", [*ig, "--defense", "noise:sigma=abc"], {"must": "sigma"}),
        ("--model-option widths=abc (mlp)", [*ig, "--model", "mlp", "--model-option", "widths=abc"],
         {"must": "widths"}),
        ("--model-option width=-4", [*ig, "--model-option", "width=-4"], {"must": "width"}),
        ("--model-option width=0", [*ig, "--model-option", "width=0"], {"must": "width"}),
        ("-p restarts=1e9", [*ig, "-p", "restarts=1e9"], {"must": "restarts"}),
        ("-p tv=nan", [*ig, "-p", "tv=nan"], {"must": "tv"}),
        ("-p lr=inf", [*ig, "-p", "lr=inf"], {"must": "lr"}),
        ("grid model-option.width=-4 with --dry-run", ["sweep", str(g["width"]), "--dry-run"], {"must": "width"}),
        ("grid model-option.widths=abc", ["sweep", str(g["widths"]), "--dry-run"], {"must": "widths"}),
        ("grid restarts = 1e9", ["sweep", str(g["restarts"]), "--dry-run"], {"must": "restarts"}),
        ("grid defense noise:sigma=abc", ["sweep", str(g["sigma"]), "--dry-run"], {"must": "sigma"}),
        ("--seed 99999999999999999999", [*ig, "--seed", "99999999999999999999"], {"must": "seed"}),
        ("a model needing > 1 TB (convnet width=100000)", [*ig, "--model-option", "width=100000"],
         {"must": "memory"}),
        ("update file: malformed JSON metadata", [*upd, str(bad_meta["json"])], {}),
        ("update file: num_examples 'abc'", [*upd, str(bad_meta["n_abc"])], {"must": "num_examples"}),
        ("update file: num_examples 1.5", [*upd, str(bad_meta["n_float"])], {"must": "num_examples"}),
        ("update file: local_training a list", [*upd, str(bad_meta["lt_list"])], {"must": "local_training"}),
        ("update file: local_training unknown keys", [*upd, str(bad_meta["lt_keys"])], {"must": "mom"}),
        ("update file: weight delta without local training",
         [*upd, str(fx.update_file(root, "delta", '{"kind": "weight_delta", "num_examples": 2}'))],
         {"must_not": "LocalTraining("}),
        ("a zero-byte .pt checkpoint", [*ig, "--checkpoint", str(ck["empty.pt"])], {}),
        ("a NaN checkpoint", [*ig, "--checkpoint", str(ck["nan.safetensors"])],
         {"must": "checkpoint", "must_not": "update"}),
        ("--checkpoint a folder", [*ig, "--checkpoint", str(ck["dir"])], {"must": "folder"}),
        ("a malicious generator file", ["attack", "ggl", *FAST, "-p", f"generator={fx.evil_pickle(root)}"], {}),
        ("CIFAR string labels", [*ig, "--dataset", "cifar10", "--data-dir",
                                 str(fx.cifar_dir(root, "cifar-str", ["a", "b"]))], {}),
        ("CIFAR huge labels", [*ig, "--dataset", "cifar10", "--data-dir",
                               str(fx.cifar_dir(root, "cifar-huge", [10**30, 1]))], {}),
        ("IDX with zero items", [*ig, "--dataset", "mnist-idx", "--data-dir", str(fx.idx_dir(root, "idx0", items=0))],
         {}),
        ("IDX corrupt .gz", [*ig, "--dataset", "mnist-idx", "--data-dir",
                             str(fx.idx_dir(root, "idxgz", items=2, corrupt_gz=True))], {}),
        ("decompression-bomb PNG", [*ig, "--dataset", "imagefolder", "--data-dir", str(fx.image_dirs(root)["bomb"])],
         {}),
        ("--data-dir with an embedded dataset", [*ig, "--data-dir", str(root)], {"must_not": "valid options: ("}),
        ("grid nested 5000 deep", ["sweep", str(g["deep"]), "--dry-run"], {}),
        ("empty grid file", ["sweep", str(g["empty"]), "--dry-run"], {}),
        ("--backend ray --address auto with no cluster", ["sweep", str(g["tiny"]), "--db", str(root / "ray.sqlite"),
                                                          "--backend", "ray", "--address", "auto"], {}),
    ]


def _cell(why: str | None) -> str:
    text = "ok" if why is None else why if why.startswith("skipped") else "FAIL: " + why
    return text.replace("|", "/").replace("\n", " ")


def _no_wal(db: Path) -> str | None:
    return "a -wal file appeared" if Path(f"{db}-wal").exists() else None


def api_cases() -> list[tuple[str, Callable[[], Any], str]]:
    """(what, call, word the message must hold) for every API example."""
    import numpy as np

    import gradleak as gl
    from gradleak.core.types import ClientUpdate, LocalTraining

    model = gl.build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    grads = dict(gl.fedsgd_update(model, torch.rand(2, 1, 8, 8), torch.tensor([1, 2])).tensors)
    first = next(iter(grads))

    def with_first(t: Any) -> dict[str, Any]:
        return {**grads, first: t}

    def attack(update: Any) -> Any:
        return gl.create_attack("ig", steps=2).run(model, update, shape=(1, 8, 8))

    truth = gl.sample_batch(gl.load_dataset("digits"), 2, seed=0)
    rec = gl.create_attack("ig", steps=1).run(model, ClientUpdate.from_gradients(grads, 2), shape=(1, 8, 8))
    return [
        ("from_weights with a (1,) tensor against (200, 64)",
         lambda: ClientUpdate.from_weights({"w": torch.zeros(200, 64)}, {"w": torch.zeros(1)}, 2, LocalTraining()),
         "shape"),
        ("from_gradients with 5 labels for num_examples=2",
         lambda: ClientUpdate.from_gradients(grads, 2, labels=torch.arange(5)), "labels"),
        ("a bool tensor", lambda: attack(ClientUpdate.from_gradients(with_first(grads[first] > 0), 2)), "dtype"),
        ("an int64 tensor", lambda: attack(ClientUpdate.from_gradients(with_first(grads[first].long()), 2)), "dtype"),
        ("a complex tensor", lambda: attack(ClientUpdate.from_gradients(with_first(grads[first].cfloat()), 2)),
         "dtype"),
        ("values of 1e38", lambda: attack(ClientUpdate.from_gradients(with_first(grads[first] * 0 + 1e38), 2)),
         "large"),
        ("an all-zero update", lambda: attack(ClientUpdate.from_gradients(
            {k: torch.zeros_like(v) for k, v in grads.items()}, 2)), "zero"),
        ("num_examples=1.5", lambda: ClientUpdate.from_gradients(grads, 1.5), "num_examples"),
        ("num_examples=nan", lambda: ClientUpdate.from_gradients(grads, float("nan")), "num_examples"),
        ("num_examples='3'", lambda: ClientUpdate.from_gradients(grads, "3"), "num_examples"),
        ("numpy tensors", lambda: ClientUpdate.from_gradients({k: v.numpy() for k, v in grads.items()}, 2), "tensor"),
        ("list tensors", lambda: ClientUpdate.from_gradients({k: v.tolist() for k, v in grads.items()}, 2), "tensor"),
        ("LocalTraining(epochs=1.5)", lambda: LocalTraining(epochs=1.5), "epochs"),
        ("LocalTraining(lr='0.1')", lambda: LocalTraining(lr="0.1"), "lr"),
        ("labels out of range in fedsgd_update",
         lambda: gl.fedsgd_update(model, torch.rand(2, 1, 8, 8), torch.tensor([3, 99])), "label"),
        ("wrong input shape into fedsgd_update",
         lambda: gl.fedsgd_update(model, torch.rand(2, 3, 32, 32), torch.tensor([1, 2])), "shape"),
        ("numpy inputs into fedsgd_update",
         lambda: gl.fedsgd_update(model, np.zeros((2, 1, 8, 8)), torch.tensor([1, 2])), "tensor"),
        ("wrong shape into attack.run",
         lambda: gl.create_attack("ig", steps=2).run(model, ClientUpdate.from_gradients(grads, 2), shape=(3, 32, 32)),
         "shape"),
        ("wrong shapes into evaluate",
         lambda: gl.evaluate(rec, gl.GroundTruth(torch.rand(2, 3, 32, 32), truth.labels)), "shape"),
        ("create_attack('ig', steps='abc')", lambda: gl.create_attack("ig", steps="abc"), "steps"),
        ("create_attack('ig', restarts=1e9)", lambda: gl.create_attack("ig", restarts=1e9), "restarts"),
        ("AuditStrategy(model='net')", _audit_net, "model"),
    ]


def _audit_net() -> Any:
    from flwr.serverapp.strategy import FedAvg

    from gradleak.integrations.flower.strategy import AuditStrategy

    return AuditStrategy(FedAvg(), model="net", shape=(1, 8, 8))


def signal_cases(root: Path) -> list[tuple[str, Callable[[], str | None]]]:
    """Ctrl-C during an attack and a sweep, SIGKILL of a sweep driver, a database locked for 40 s."""
    py = [sys.executable, "-m", "gradleak.cli"]
    long_grid = fx.grid(root, "long", fx.TINY_BASE.replace("steps = 2", "steps = 100000") + "[grid]\nseed = [0, 1]\n")

    def start(argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(py + argv, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})

    def ctrl_c(argv: list[str], out: Path, wait: float) -> str | None:
        proc = start(argv)
        if argv[0] == "sweep":  # wait for the worker's run, not the idle driver
            deadline = time.monotonic() + 120
            while len(session_alive(proc.pid)) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
        wait_busy(max(session_alive(proc.pid) or [proc.pid]), wait)
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return "still running 60 s after Ctrl-C"
        left = [p.name for p in out.parent.iterdir() if p.name.startswith(out.name) or ".gradleak-tmp" in p.name]
        if rc != 130:
            return f"exit {rc}: {proc.stderr.read().decode()[-200:]}"
        return f"left {left}" if left and out.suffix != ".sqlite" else None

    def sigkill_driver() -> str | None:
        proc = start(["sweep", str(long_grid), "--db", str(root / "kill.sqlite"), "--workers", "1", "--no-progress"])
        deadline = time.monotonic() + 120
        while len(session_alive(proc.pid)) < 3 and time.monotonic() < deadline:  # driver, tracker, worker
            time.sleep(0.2)
        wait_busy(max(session_alive(proc.pid)), 3)  # the worker is inside a run
        before = session_alive(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while session_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = session_alive(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return f"{len(left)} of {len(before)} processes still alive 10 s later" if left else None

    def locked() -> str | None:
        db = root / "locked.sqlite"
        tiny = fx.grid(root, "one", fx.TINY_BASE)
        code, _, err = run_cli(["sweep", str(tiny), "--db", str(db), "--no-progress", "--workers", "0"])
        if code != 0:
            return f"setup failed: {err[-200:]}"
        holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], "
                                   "isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); "
                                   "time.sleep(40)", str(db)], stdout=subprocess.PIPE)
        holder.stdout.readline()
        two = fx.grid(root, "two", fx.TINY_BASE + "[grid]\nseed = [5]\n")
        code, _, err = run_cli(["sweep", str(two), "--db", str(db), "--no-progress", "--workers", "0", "--json"])
        holder.wait()
        rows = sqlite3.connect(db).execute("SELECT count(*) FROM runs").fetchone()[0]
        return None if code == 0 and rows == 2 else f"exit {code}, {rows} rows: {err.strip()[-160:]}"

    return [
        ("Ctrl-C during an attack", lambda: ctrl_c(["attack", "ig", *FAST[:-3], "--steps", "1000000", "--out",
                                                    str(root / "intr"), "--no-progress"], root / "intr", 12)),
        ("Ctrl-C during a sweep", lambda: ctrl_c(["sweep", str(long_grid), "--db", str(root / "intr.sqlite"),
                                                  "--no-progress"], root / "intr.sqlite", 3)),
        ("SIGKILL of the sweep driver: no process left after 10 s", sigkill_driver),
        ("a database locked by another process for 40 s", locked),
        ("300 000 seeds against the 10 000-run limit refused within 60 s", lambda: _timed(
            py + ["sweep", str(root / "seeds.toml"), "--dry-run"], 60)),
        ("--model-state trained:99999999 refused within 60 s", lambda: _timed(
            py + ["attack", "ig", *FAST, "--model-state", "trained:99999999", "--out", str(root / "huge")], 60)),
    ]


def _timed(argv: list[str], limit: float) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limit,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    except subprocess.TimeoutExpired:
        return f"still running after {limit:.0f} s"
    return expect_exit_2(done.returncode, done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--skip-slow", action="store_true", help="skip the signal and timing cases")
    parser.add_argument("--out", default=None, help="results file (default docs/results/hostile_inputs.md)")
    parser.add_argument("--label", default="this checkout", help="which code ran, for the results file")
    parser.add_argument("--compare", default=None, metavar="FILE",
                        help="an earlier results file (e.g. of the code before issue 16) whose count is quoted")
    args = parser.parse_args()
    out = Path(args.out).resolve() if args.out else Path(__file__).resolve().parents[1] / "docs" / "results" / \
        "hostile_inputs.md"  # resolved now: the cases run in a temporary folder
    compare = str(Path(args.compare).resolve()) if args.compare else None  # before the cases change folder
    torch.set_num_threads(1)
    # Started as `cmd &` by a shell without job control (nohup, a script), this process and every CLI
    # it starts would ignore SIGINT (POSIX), and the Ctrl-C cases would fail for the launch's sake.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rows: list[tuple[str, str, str | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["GRADLEAK_CACHE"] = str(root / "cache")
        os.chdir(root)  # default run folders land in the temporary folder
        for i, (what, argv, opts) in enumerate(cli_cases(root)):
            if argv[0] == "attack" and "--out" not in argv:
                argv = [*argv, "--out", str(root / f"out{i}")]
            if "--address" in argv and ray_running():
                rows.append(("cli", what, "skipped: another job's Ray cluster runs here, so 'auto' finds one"))
                continue
            before = snapshot(root)
            code, _, err = run_cli(argv)
            why = expect_exit_2(code, err, opts.get("must", ""), opts.get("must_not", ""))
            changed = [k for k, v in snapshot(root).items() if before.get(k) != v and not k.startswith("cache")]
            changed += [k for k in before if not (root / k).exists()]
            if why is None and changed:
                why = f"changed {changed[:3]}"
            if why is None and opts.get("check"):
                why = opts["check"]()
            rows.append(("cli", what, why))
        for what, fn, must in api_cases():
            rows.append(("api", what, expect_error(fn, must)))
        if not args.skip_slow:
            for what, fn in signal_cases(root):
                rows.append(("signals", what, fn()))
    failed = [r for r in rows if r[2] is not None and not r[2].startswith("skipped")]
    skipped = [r for r in rows if r[2] is not None and r[2].startswith("skipped")]
    lines = ["| where | example | result |", "|---|---|---|"]
    lines += [f"| {w} | {what} | {_cell(why)} |" for w, what, why in rows]
    text = "\n".join(lines)
    print(text)
    print(f"\n{len(rows)} examples, {len(failed)} still fail, {len(skipped)} skipped")
    if not args.no_write:
        import gradleak

        out.parent.mkdir(parents=True, exist_ok=True)
        flags = f"{' --skip-slow' if args.skip_slow else ''}{' --out ' + out.name if args.out else ''}"
        out.write_text(f"# Issue 16's examples, re-run\n\nCommand: `python bench/hostile_inputs.py{flags}` "
                       f"(PYTHONPATH pointing at the code under test); code: {args.label} (gradleak "
                       f"{gradleak.__version__}); torch {torch.__version__}, Python "
                       f"{platform.python_version()}, {platform.machine()} ({os.cpu_count()} CPUs).\n\n"
                       f"{len(rows)} examples, **{len(failed)} still fail**, {len(skipped)} skipped."
                       f"{_compared(compare)}\n\n{text}\n")


def _compared(path: str | None) -> str:
    """The count line of an earlier results file, quoted with where it came from."""
    if not path:
        return ""
    lines = Path(path).read_text().splitlines()
    code = next((ln.split("code: ", 1)[1].split(" (gradleak")[0] for ln in lines if "code: " in ln), "?")
    count = next((ln for ln in lines if " examples, **" in ln), "?")
    return f"\n\nBefore, the same script on {code} ([{Path(path).name}]({Path(path).name})): {count}"


if __name__ == "__main__":
    main()
