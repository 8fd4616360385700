"""Shared pieces of ``make tables``: run a committed grid into its store, read it back, and write
the provenance block every ``docs/results/*.md`` file starts with.

Nothing here is typed in: every number a results file shows is computed from the runs stored in
``runs/tables/NAME.sqlite`` (or, for the few runs no scenario can express, a JSON cache).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gradleak.sweep import load_grid
from gradleak.sweep.backends import run_sweep
from gradleak.sweep.store import Store

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "bench" / "tables"
RESULTS = ROOT / "docs" / "results"


def run_grid(name: str, db_dir: Path, *, workers: int, log: Callable[[str], None] = print) -> Path:
    """Run ``bench/tables/NAME.toml`` into ``db_dir/NAME.sqlite`` (resumable: stored runs are skipped)."""
    grid = load_grid(TABLES / f"{name}.toml")
    db = db_dir / f"{name}.sqlite"
    done = [0]

    def on_result(result: dict[str, Any]) -> None:
        done[0] += 1
        psnr = (result.get("metrics") or {}).get("psnr")
        log(f"  {name} [{done[0]}] {result['status']} {result.get('preset')} seed={result['config'].get('seed')} "
            + (f"psnr={psnr:.2f}" if psnr is not None else str(result.get("error", ""))[:160]))

    counts = run_sweep(grid, db, workers=workers, cpus_per_run=1, retry_failed=True,
                       on_start=lambda c: log(f"{name}: {c['total']} runs, {c['skipped']} stored, "
                                              f"{c['to_run']} to run"),
                       on_result=on_result)
    if counts["failed"]:
        raise SystemExit(f"{name}: {counts['failed']} run(s) failed; see the store {db}")
    return db


def stored(db: Path) -> list[dict[str, Any]]:
    """The finished runs of a store."""
    with Store(db, readonly=True) as store:
        return store.runs("done")


def median(values: Iterable[float | None]) -> float:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def f1(value: float) -> str:
    """One decimal (``–`` for NaN)."""
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!docs/results"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "") or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(*, title: str, name: str, rows: list[dict[str, Any]], elapsed: float, split: str, seeds: str,
               preset: str, budget: str, extra: Iterable[str] = ()) -> list[str]:
    """The header every results file carries: command, config, seeds, split, preset, budget,
    versions, machine and wall time."""
    versions = sorted({", ".join(f"{k} {v}" for k, v in sorted((r.get("versions") or {}).items()))
                       for r in rows} - {""})
    run_seconds = sum(r.get("wall_seconds") or 0.0 for r in rows)
    finished = [str(r["finished"])[:16].replace("T", " ") for r in rows if r.get("finished")]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    lines = [
        f"# {title}", "",
        "Written by `make tables` (`python bench/tables/make_tables.py --only "
        f"{name}`) from the committed grid `bench/tables/{name}.toml`; the runs are stored in "
        f"`runs/tables/{name}.sqlite` (a killed run resumes where it stopped). Do not edit by hand.", "",
        f"- **split**: {split}",
        f"- **seeds**: {seeds}",
        f"- **preset**: {preset}",
        f"- **budget**: {budget}",
        *[f"- {line}" for line in extra],
        f"- **versions**: {'; '.join(versions) or 'n/a'}; gradleak commit {git_commit()} at writing (a resumed "
        "store keeps the runs an earlier commit made)",
        f"- **machine**: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPU(s), one torch "
        f"thread per run; load average at writing {load}",
        f"- **wall time**: {run_seconds:.0f} s of run time over {len(rows)} stored runs; "
        + (f"this regeneration took {elapsed:.0f} s (a resumed one skips stored runs)" if elapsed >= 1 else
           "rendered from the stores (`--render-only`), no run repeated")
        + (f"; the runs finished between {first} and {last}" if (first := min(finished, default=None))
           and (last := max(finished, default=None)) else "")
        + ". Seconds depend on the machine's load; compare them within one table only.",
        f"- written {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
    ]
    return lines


def table(header: list[str], body: list[list[str]]) -> list[str]:
    """A GitHub Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *["| " + " | ".join(row) + " |" for row in body], ""]


def write(name: str, lines: list[str]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def info(row: dict[str, Any], key: str) -> Any:
    """A value of the attack's ``info`` stored with a run."""
    return ((row.get("detail") or {}).get("info") or {}).get(key)


PREVIOUS_RUN = ("the table committed before this re-run; its runs were made with the code before issue 15 "
                "(IG's lr 0.1 and tv 0.01 at every batch size; every Adam attack returning its last iterate, "
                "not its lowest-loss one; DLG's and iDLG's L-BFGS restarts one after another, not rows of one "
                "batched L-BFGS; SPEAR before issue 19). Where only float rounding changed, a chaotic "
                "optimisation still moves single seeds by several dB, so read small changes as noise")
"""What the ``previous`` numbers each renderer keeps beside its rows were measured with."""


def against_previous(rows: list[tuple[str, float | None, float]], *, unit: str = "dB") -> list[str]:
    """A section putting this run's medians beside those of the table's previous committed run
    (:data:`PREVIOUS_RUN`), and a sentence naming every row that fell by more than 0.05.

    ``rows`` are ``(label, previous, now)``; a row with no previous number is left out.

    Example:
        >>> lines = against_previous([("IG", 40.7, 40.3), ("GIFD", 46.8, 47.0)])
        >>> lines[6], lines[-2]
        ('| IG | 40.7 | 40.3 | -0.4 |', '**Lower than the previous run**: IG (40.3 dB now, 40.7 dB before).')
    """
    body, worse = [], []
    for label, before, now in rows:
        if before is None:
            continue
        body.append([label, f"{before:.1f}", f1(now), f"{round(now - before, 1) + 0.0:+.1f}"])
        if now < before - 0.05:
            worse.append(f"{label} ({f1(now)} {unit} now, {before:.1f} {unit} before)")
    lines = ["## Against this table's previous run", "", f"Previous: {PREVIOUS_RUN}.", "",
             *table(["row", "previous median", "now", "change"], body)]
    lines += ["**Lower than the previous run**: " + "; ".join(worse) + "." if worse
              else "No row is lower than in the previous run.", ""]
    return lines
