"""Benchmark SPEAR (issues 4, 19) and write docs/results/spear.md.

Sections (``--section``, default ``all``):

* ``grid``   — the issue-19 table: b ∈ {16, 25, 32, 48, 64} × hidden width ∈ {200, 500, 1000} ×
  {MNIST, natural32}, ``--batches`` (10) seeded batches per cell, budget ``--budget`` (300 s);
* ``extras`` — FedAvg with 5 full-batch local steps, a duplicated sample, near-duplicates, DP-SGD
  (``--extra-batches`` 5, ``--extras-budget`` 120 s);
* ``ideas``  — each part of the search switched off in turn (``--idea-batches`` 3, ``--ideas-budget``
  120 s, a variant stops after 2 runs with no exact batch);
* ``ica``    — a probe of an idea that failed (kurtosis maximisation for the directions).

Every batch is drawn from the dataset's ``attack`` split (``gradleak.data.splits``), so no scored
batch could have chosen a hyper-parameter; cached records from before that (whole dataset, keys
without ``|split=attack``) are kept but not reported.

Every finished run is appended to ``--cache`` (JSON lines) with its seed, the git commit and the
machine load, and skipped when the script runs again, so a long table can be measured in
several sittings (``--max-minutes`` stops starting new runs). A cell whose first
``--stop-after-failures`` runs recover no batch exactly is not run further (the report says how
many batches each cell has). ``--report-only`` rewrites the results file from the cache.

Examples::

    python bench/bench_spear.py                                  # everything (hours)
    python bench/bench_spear.py --section grid --max-minutes 100
    python bench/bench_spear.py --section extras --batches 5
    python bench/bench_spear.py --report-only

Seconds are wall-clock time of ``attack.run`` in one thread on whatever machine runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from spear_cases import SPLIT, Case, extras, grid, ideas, load_cases_dataset, run_case

ROOT = Path(__file__).resolve().parents[1]


def _commit() -> str:
    if os.environ.get("SPEAR_BENCH_COMMIT"):            # a snapshot run (git archive of a commit)
        return os.environ["SPEAR_BENCH_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src", "bench"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load(cache: Path) -> list[dict]:
    if not cache.exists():
        return []
    return [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]


def measure(cases: list[Case], batches: int, cache: Path, deadline: float, stop_after: int,
            command: str, first_seed: int = 0) -> None:
    """Run the missing seeds of each case, appending each record to the cache."""
    done = defaultdict(dict)
    for r in load(cache):
        done[r["key"]][r["seed"]] = r
    datasets: dict = {}
    commit = _commit()
    for case in cases:
        for seed in range(first_seed, batches):  # a second process can take a cell's later seeds
            runs = done[case.key]
            if seed in runs:
                continue
            firsts = [runs[s] for s in range(min(stop_after, batches)) if s in runs]
            if stop_after and len(firsts) >= stop_after and not any(r["exact_fraction"] == 1 for r in firsts):
                break
            if time.time() > deadline:
                print("# --max-minutes reached; run again to continue", flush=True)
                return
            if case.dataset not in datasets:
                datasets[case.dataset] = load_cases_dataset(case.dataset, case.split)
            rec = run_case(case, datasets[case.dataset], seed)
            rec.update({"commit": commit, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "section": case.section, "label": case.label, "command": command})
            runs[seed] = rec
            with cache.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"{case.key} seed={seed} exact={rec['exact_fraction']:.3f} psnr={rec['psnr']:.1f} "
                  f"s={rec['seconds']:.1f} complete={rec.get('complete')} load={rec['load_before']:.1f}",
                  flush=True)


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _drawn_from_split(r: dict) -> bool:
    """Whether a cached record's batch came from the ``attack`` split (older ones: whole dataset)."""
    return r["key"].endswith(f"|split={SPLIT}") if "key" in r else r.get("split") == SPLIT


def report(cache: Path, out: Path, args: argparse.Namespace) -> None:
    """Write the results file from every record in the cache."""
    from spear_report import sections

    every = load(cache)
    records = [r for r in every if _drawn_from_split(r)]
    lines = ["# SPEAR — exact batch recovery (issue 19)", "",
             f"Written by `python bench/bench_spear.py --report-only` from `docs/results/{cache.name}` "
             f"({len(records)} runs; {len(every) - len(records)} older records drawn from the whole dataset, "
             f"before the `{SPLIT}` split was used, are kept in the cache but not shown) on "
             f"{time.strftime('%Y-%m-%d')}. Commands that measured it:", ""]
    commands = sorted({r.get("command", "") for r in records} - {""})
    lines += [f"    {c}" for c in commands] or ["    python bench/bench_spear.py"]
    commits = sorted({r.get("commit", "?") for r in records})
    lines += ["", f"* Code: gradleak commit(s) {', '.join(commits)}; Python {platform.python_version()}, "
                  f"torch {torch.__version__}; one thread (`torch.set_num_threads(1)`).",
              f"* Machine: {_machine()}, shared with other jobs — the load average (1 min) is recorded "
              "before each run; seconds are wall-clock time of `attack.run` and are inflated by that load.",
              "* Model: `mlp` with one hidden layer of the given width, **untrained** (seeded), so no "
              "sample ever trained it; batches: `sample_batch(seed=i, label_mode='random')` from the dataset's "
              f"`{SPLIT}` split (`gradleak.data.splits`: no scored batch chose a hyper-parameter or "
              "trained anything), seeds i = 0, 1, …; attack `spear` (`method=hybrid`, labels not used), seed i.",
              "* Exact: every image's max abs pixel error below 1e-4 after Hungarian matching.", ""]
    lines += sections(records, args.budget, args.stop_after_failures)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", default="all", choices=("all", "grid", "extras", "ideas", "ica"))
    parser.add_argument("--batches", type=int, default=10, help="seeded batches per cell")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="start each cell at this seed (a second process sharing the work of one cell)")
    parser.add_argument("--extra-batches", type=int, default=5, help="batches per extras case")
    parser.add_argument("--idea-batches", type=int, default=3, help="batches per ideas case")
    parser.add_argument("--budget", type=float, default=300.0, help="attack budget in seconds (grid)")
    parser.add_argument("--extras-budget", type=float, default=120.0)
    parser.add_argument("--ideas-budget", type=float, default=120.0)
    parser.add_argument("--sizes", default="16,25,32,48,64")
    parser.add_argument("--widths", default="200,500,1000")
    parser.add_argument("--datasets", default="mnist,natural32")
    parser.add_argument("--cache", type=Path, default=ROOT / "docs/results/spear-runs.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/spear.md")
    parser.add_argument("--max-minutes", type=float, default=float("inf"))
    parser.add_argument("--stop-after-failures", type=int, default=3)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.report_only:
        deadline = time.time() + 60 * args.max_minutes
        command = " ".join(["python bench/bench_spear.py", *sys.argv[1:]])
        sizes = [int(s) for s in args.sizes.split(",")]
        widths = [int(w) for w in args.widths.split(",")]
        if args.section in ("all", "grid"):
            measure(grid(sizes, widths, args.datasets.split(","), args.budget), args.batches, args.cache,
                    deadline, args.stop_after_failures, command, args.first_seed)
        if args.section in ("all", "extras"):
            measure(extras(args.extras_budget), args.extra_batches, args.cache, deadline, 0, command)
        if args.section in ("all", "ideas"):
            measure(ideas(args.ideas_budget), args.idea_batches, args.cache, deadline, 2, command)
        if args.section in ("all", "ica"):
            from spear_report import ica_probe

            ica_probe(args.cache, _commit())
    report(args.cache, args.out, args)


if __name__ == "__main__":
    main()
