"""Command-line start-up: median wall time of ``gradleak --help`` and ``gradleak list`` over 5 runs, per tree.

Usage:
    python bench/bench_cli.py --tree before=/path/to/main/src --tree after=src   # writes docs/results/cli_startup.md
    python bench/bench_cli.py --runs 9 --no-write

Each command runs as a fresh ``python -m gradleak.cli ...`` process with ``PYTHONPATH`` set to the
tree's ``src/`` (one warm-up run first, so the file-system cache is warm for every tree); the
trees alternate run by run, so a change of machine load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "cli_startup.md"
COMMANDS = (["--help"], ["list"])


def wall(src: str, argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gradleak.cli", *argv], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def revision(src: str) -> str:
    """The git commit of the tree holding ``src`` (``?`` outside git), ``+`` when it has uncommitted changes."""
    root = Path(src).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=SRC")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    load_before = [round(v, 2) for v in os.getloadavg()]
    times: dict[str, dict[str, list[float]]] = {n: {" ".join(c): [] for c in COMMANDS} for n in trees}
    for src in trees.values():
        for argv in COMMANDS:
            wall(src, argv)  # warm-up
    for _ in range(args.runs):
        for argv in COMMANDS:
            for name, src in trees.items():
                times[name][" ".join(argv)].append(wall(src, argv))
    medians = {n: {c: round(statistics.median(v), 3) for c, v in cs.items()} for n, cs in times.items()}
    load_after = [round(v, 2) for v in os.getloadavg()]
    lines = ["# Command-line start-up", "",
             f"Written by `python bench/bench_cli.py {' '.join('--tree ' + t for t in args.tree)} --runs {args.runs}` "
             f"(Python {platform.python_version()}, {os.cpu_count()} cores, load average {load_before} before, "
             f"{load_after} after). Median wall seconds of {args.runs} fresh processes each.", "",
             "| tree | " + " | ".join(f"`gradleak {' '.join(c)}`" for c in COMMANDS) + " |",
             "|---|" + "---|" * len(COMMANDS)]
    for name, src in trees.items():
        lines.append(f"| {name} (`{revision(src)}`) | "
                     + " | ".join(f"{medians[name][' '.join(c)]:.2f} s" for c in COMMANDS) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
