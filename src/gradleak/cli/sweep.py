"""The ``gradleak sweep`` and ``gradleak report`` commands, and the sweep's progress bar.

Example:
    $ gradleak sweep bench/suite.toml --db results.sqlite --workers 1
    $ gradleak sweep grid.toml --db results.sqlite --backend ray --address auto
    $ gradleak report results.sqlite -o report.html
    $ gradleak report results.sqlite --format md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from gradleak.cli.tables import show_table
from gradleak.core.device import DEVICE_HELP


def add_parsers(sub: Any) -> None:
    """Add the ``sweep`` and ``report`` subcommands to the CLI's subparsers."""
    sw = sub.add_parser("sweep", help="run a TOML grid of scenarios into a SQLite results file (resumable)")
    sw.add_argument("grid", help="TOML grid file ([base], [grid], [per_attack.NAME], [presets.NAME])")
    sw.add_argument("--db", default="results.sqlite", help="SQLite results file (default results.sqlite)")
    sw.add_argument("--backend", default="local", choices=["local", "ray"])
    sw.add_argument("--workers", type=int, default=None,
                    help="parallel runs (local default: one per core; ray: CPUs of a local Ray / tasks in flight)")
    sw.add_argument("--address", default=None, help="Ray cluster to join, e.g. 'auto' (ray backend)")
    sw.add_argument("--cpus-per-run", type=int, default=None,
                    help="torch threads per run (default 1; ray: the CPUs each task asks for)")
    sw.add_argument("--device", default="auto", help=DEVICE_HELP + "; ray: the workers' device")
    sw.add_argument("--no-batch", action="store_true",
                    help="attack every run on its own (default: runs that differ only in the client's defenses, "
                         "protocol or label mode are attacked in one batched pass)")
    sw.add_argument("--retry-failed", action="store_true", help="run stored failed runs again")
    sw.add_argument("--max-runs", type=int, default=None,
                    help="refuse grids expanding to more runs than this (default [sweep] max_runs or 10000)")
    sw.add_argument("--preset", action="append", default=None, metavar="NAME",
                    help="run only this named preset (repeatable)")
    sw.add_argument("--dry-run", action="store_true", help="check and list the plan; run nothing")
    sw.add_argument("--report", default=None, metavar="FILE.html", help="write the HTML report at the end")
    sw.add_argument("--overwrite", action="store_true", help="replace an existing --report file")
    sw.add_argument("--json", action="store_true", help="print the final counts as one JSON object")
    sw.add_argument("--no-progress", action="store_true")
    rp = sub.add_parser("report", help="HTML / Markdown / CSV report of a sweep's results file")
    rp.add_argument("db", help="SQLite results file written by 'gradleak sweep' (may still be running)")
    rp.add_argument("-o", "--out", default=None,
                    help="output file (html default report.html; md/csv default stdout)")
    rp.add_argument("--format", default=None, choices=["html", "md", "csv"],
                    help="default: from --out's suffix, else html")
    rp.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    rp.add_argument("--by", default="summary", choices=["summary", "preset", "config", "runs"],
                    help="md/csv rows: attack × defense, preset × attack × defense, each configuration, or each run")


def describe_run(config: dict[str, Any]) -> str:
    """A run in a few words: ``ig b=2 seed=0 noise:sigma=0.01``."""
    return (f"{config.get('attack')} b={config.get('batch_size')} seed={config.get('seed')} "
            f"{' + '.join(config.get('defenses') or [])}").strip()


class EtaColumn(ProgressColumn):
    """Time left from the sweep's own throughput (finished runs per second since it started)."""

    def render(self, task: Any) -> Text:
        deadline = task.fields.get("deadline")
        if deadline is None:
            return Text("ETA after the first run", style="progress.remaining")
        left = max(0.0, deadline - time.perf_counter())
        return Text(f"ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}",
                    style="progress.remaining")


class SweepBar:
    """The sweep's bar (done / failed / remaining, ETA) and one line per active run; plain lines
    when stderr is not a terminal."""

    def __init__(self, progress: Progress | None, active: Progress | None, console: Console) -> None:
        self.progress, self.active, self.console = progress, active, console
        self.task: Any = None
        self.running: dict[str, Any] = {}
        self.done = self.failed = self.total = 0
        self.start = time.perf_counter()

    def eta(self) -> float | None:
        """Seconds left at the throughput so far (``None`` before the first run finishes)."""
        finished = self.done + self.failed
        if not finished:
            return None
        return (time.perf_counter() - self.start) / finished * (self.total - finished)

    def on_start(self, counts: dict[str, int]) -> None:
        self.total = counts["to_run"]
        self.start = time.perf_counter()
        message = (f"{counts['total']} planned, {counts['skipped']} already stored, "
                   f"{counts['to_run']} to run")
        if self.progress is not None:
            self.progress.console.print(message)
            self.task = self.progress.add_task("sweep", total=self.total, done=0, failed=0,
                                               remaining=self.total, deadline=None)
        else:
            self.console.print(message, soft_wrap=True)

    def on_begin(self, task: dict[str, Any]) -> None:
        if self.active is not None:
            self.running[task["key"]] = self.active.add_task(f"running {describe_run(task['config'])}", total=None)

    def on_result(self, result: dict[str, Any]) -> None:
        self.done += result["status"] == "done"
        self.failed += result["status"] == "failed"
        finished = self.done + self.failed
        if self.active is not None and result["key"] in self.running:
            self.active.remove_task(self.running.pop(result["key"]))
        left = self.eta()
        line = (f"[{finished}/{self.total}] {result['status']} {result['key']} {describe_run(result['config'])}" +
                (f" psnr={result['metrics']['psnr']:.2f}" if result["status"] == "done" else
                 f" error: {result.get('error', '')[:200]}"))
        if self.progress is not None:
            if result["status"] == "failed":
                self.progress.console.print(line)
            self.progress.update(self.task, completed=finished, done=self.done, failed=self.failed,
                                 remaining=self.total - finished,
                                 deadline=None if left is None else time.perf_counter() + left)
        else:
            eta = "" if left is None or finished == self.total else f" (ETA {left:.0f} s)"
            self.console.print(line + eta, highlight=False, soft_wrap=True)  # one line per run in a log


@contextmanager
def sweep_bar(disable: bool) -> Iterator[SweepBar | None]:
    """A :class:`SweepBar` on stderr (``None`` when disabled)."""
    console = Console(stderr=True)
    if disable:
        yield None
        return
    if not console.is_terminal:
        yield SweepBar(None, None, console)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("done {task.fields[done]} · failed {task.fields[failed]} · "
                          "remaining {task.fields[remaining]}"), TimeElapsedColumn(), EtaColumn())
    progress = Progress(*columns, console=console)
    active = Progress(TextColumn("  {task.description}"), TimeElapsedColumn(), console=console)
    with Live(Group(progress, active), console=console, refresh_per_second=4):
        yield SweepBar(progress, active, console)


def cmd_sweep(args: argparse.Namespace) -> int:
    """``gradleak sweep``: check the whole grid, then run what is not stored yet."""
    from gradleak.experiment.outputs import check_output_file
    from gradleak.sweep.backends import check_backend_options, run_sweep
    from gradleak.sweep.grid import load_grid
    from gradleak.sweep.storefile import identify

    check_backend_options(args.backend, args.workers, args.address, args.cpus_per_run)
    grid = load_grid(args.grid, max_runs=args.max_runs, presets=args.preset)
    identify(Path(args.db))  # a foreign or newer database is refused now, untouched
    if args.report:  # the report's path is checked before any run, not after the last
        check_output_file(args.report, overwrite=args.overwrite, what="report file")
    if args.dry_run:
        return _dry_run(grid, args)
    with sweep_bar(args.no_progress) as bar:
        counts = run_sweep(grid, args.db, backend=args.backend, workers=args.workers, address=args.address,
                           cpus_per_run=args.cpus_per_run, retry_failed=args.retry_failed,
                           device=args.device, group=not args.no_batch,
                           on_start=bar.on_start if bar else None, on_result=bar.on_result if bar else None,
                           on_begin=bar.on_begin if bar else None)
    if counts["unstored"]:
        from gradleak.sweep.storefile import unstored_path

        sys.stderr.write(f"gradleak: warning: {counts['unstored']} finished run(s) could not be stored in "
                         f"{args.db} (locked by another process); they are kept in {unstored_path(args.db)} "
                         "and the next sweep on this database stores them\n")
    if args.report:
        from gradleak.report import write_report

        write_report(args.db, args.report, overwrite=args.overwrite)
    if args.json:
        print(json.dumps({**counts, "db": str(args.db), "report": args.report}))
    else:
        console = Console()
        show_table(f"sweep {args.grid} → {args.db}", ["planned", "already stored", "done now", "failed now"],
                   [[str(counts[k]) for k in ("total", "skipped", "done", "failed")]], console=console)
        hint = f"report written to {args.report}" if args.report else \
            f"report: gradleak report {args.db} -o report.html"
        console.print(hint + (" · retry failures with --retry-failed" if counts["failed"] else ""))
    return 1 if counts["failed"] or counts["unstored"] else 0


def _dry_run(grid: Any, args: argparse.Namespace) -> int:
    """Say what the sweep would run and why (each preset's axes and their sources); run nothing."""
    from gradleak.sweep.backends import default_workers
    from gradleak.sweep.explain import explain_grid, explanation_lines
    from gradleak.sweep.store import Store

    status: dict[str, str] = {}
    if Path(args.db).is_file():
        with Store(args.db, readonly=True) as store:
            status = store.statuses()
    plan = [{"key": r.key, "preset": r.preset, "stored": status.get(r.key),
             "attack": r.scenario.attack, "batch_size": r.scenario.batch_size, "seed": r.scenario.seed,
             "defenses": list(r.scenario.defenses), "dataset": r.scenario.dataset, "model": r.scenario.model,
             "options": r.scenario.attack_options} for r in grid.runs]
    if args.json:
        print(json.dumps(plan, default=str))
        return 0
    why = explain_grid(grid.text, presets=grid.presets)
    console = Console()
    to_run = sum(p["stored"] not in ("done", "failed") for p in plan)
    workers = args.workers if args.workers is not None else (default_workers() if args.backend == "local" else None)
    console.print(f"{len(plan)} runs planned from {args.grid}, {len(plan) - to_run} already stored in {args.db}, "
                  f"{to_run} would run" + (f" on {workers} worker(s), {args.cpus_per_run or 1} thread(s) each"
                                           if workers else "") + "; nothing was run.", highlight=False)
    console.print("why (a preset starts from [base] and [grid]; its own values replace the same option):",
                  highlight=False, markup=False)
    for line in explanation_lines(why):
        console.print("  " + line, highlight=False, markup=False)
    rows = [[p["key"], p["preset"], p["attack"], f"{p['dataset']}/{p['model']}", str(p["batch_size"]),
             str(p["seed"]), " + ".join(p["defenses"]) or "none",
             ", ".join(f"{k}={v}" for k, v in p["options"].items()) or "-", p["stored"] or "-"] for p in plan]
    columns = ["key", "preset", "attack", "data/model", "batch", "seed", "defenses", "options", "stored"]
    same = [i for i in range(2, len(columns) - 1) if len(rows) > 1 and len({r[i] for r in rows}) == 1]
    if same:
        console.print("every run: " + "; ".join(f"{columns[i]} {rows[0][i]}" for i in same),
                      highlight=False, markup=False)
    keep = [i for i in range(len(columns)) if i not in same]
    show_table(f"{len(plan)} runs (nothing run)", [columns[i] for i in keep], [[r[i] for i in keep] for r in rows],
               console=console)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``gradleak report``: HTML (self-contained), Markdown or CSV of a results file."""
    from gradleak.report import write_report

    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else ""
        fmt = suffix if suffix in ("md", "csv") else "html"
    out = args.out or ("report.html" if fmt == "html" else None)
    text = write_report(args.db, out, fmt=fmt, by=args.by, overwrite=args.overwrite)
    if out is None:
        sys.stdout.write(text)
    else:
        Console(stderr=True).print(f"report written to {out}")
    return 0
