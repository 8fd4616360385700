"""IG quality after the best-iterate change: median PSNR over seeds, this tree against a baseline tree.

Usage:
    python bench/bench_ig_quality.py --baseline-src /path/to/main/src   # writes docs/results/ig_quality.md
    python bench/bench_ig_quality.py --seeds 0-4 --steps 1000           # the defaults
    python bench/bench_ig_quality.py --json-only                        # numbers of the importable gradleak

Scenario: ``ig`` on the untrained ``convnet`` (seed = the run's seed), embedded MNIST, FedSGD, labels
known, batch sizes 1 and 4, 1000 steps, one torch thread. This tree runs twice: ``keep=best`` (the
lowest-loss iterate, the default) and ``keep=last`` (the final iterate, what the loop returned
before); the baseline tree (e.g. ``git worktree add /tmp/base main``) runs in a subprocess with its
own code. PSNRs are deterministic on one machine and thread count, but the optimisation is chaotic:
float-level differences between trees (e.g. the order of a sum) move single seeds by several dB,
so compare medians and read the per-seed columns as the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "ig_quality.md"


def parse_seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def measure(seeds: list[int], steps: int, batch_sizes: list[int], keep: str | None) -> dict[str, list[float]]:
    """PSNR per seed for every batch size (``keep=None``: the tree's default, for trees without ``keep``)."""
    from gradleak.experiment import Scenario, run_scenario

    options = {"steps": steps} if keep is None else {"steps": steps, "keep": keep}
    out = {}
    for b in batch_sizes:
        out[str(b)] = [run_scenario(Scenario(attack="ig", dataset="mnist", model="convnet", batch_size=b, seed=s,
                                             labels="known", attack_options=dict(options))).metrics["psnr"]
                       for s in seeds]
        print(f"  b={b} keep={keep}: {[round(p, 2) for p in out[str(b)]]}", file=sys.stderr, flush=True)
    return out


def revision(src: str) -> str:
    """The git commit of the tree holding ``src`` (``?`` outside git)."""
    root = Path(src).resolve().parent if Path(src).is_absolute() else Path(__file__).resolve().parents[1]
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--baseline-src", default=None, help="the src/ folder of the tree to compare with")
    parser.add_argument("--json-only", action="store_true", help="print this tree's default numbers as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds, sizes = parse_seeds(args.seeds), [int(b) for b in args.batch_sizes.split(",")]
    if args.json_only:
        print(json.dumps(measure(seeds, args.steps, sizes, None)))
        return
    rows = {}
    if args.baseline_src:
        env = {**os.environ, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
        cmd = [sys.executable, __file__, "--json-only", "--seeds", args.seeds, "--steps", str(args.steps),
               "--batch-sizes", args.batch_sizes]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows["baseline (last iterate)"] = json.loads(done.stdout.strip().splitlines()[-1])
    rows["this tree, keep=best (default)"] = measure(seeds, args.steps, sizes, "best")
    rows["this tree, keep=last"] = measure(seeds, args.steps, sizes, "last")
    lines = [
        "# IG quality: the lowest-loss iterate against the last one",
        "",
        f"Written by `python bench/bench_ig_quality.py{' --baseline-src BASE' if args.baseline_src else ''}"
        f" --seeds {args.seeds} --steps {args.steps}` (torch {torch.__version__}, 1 thread, "
        f"{platform.machine()}, Python {platform.python_version()}). This tree: {revision('src')}; baseline: "
        f"{args.baseline_src or 'none'}{f' at {revision(args.baseline_src)}' if args.baseline_src else ''}.",
        "",
        f"`ig` on the untrained `convnet`, embedded MNIST (all 5000 digits; the batch is drawn with the run's "
        f"seed), FedSGD, labels known, {args.steps} steps, seeds {args.seeds}, default options otherwise.",
        "PSNR in dB after Hungarian matching.",
        "",
        "| b | code | median PSNR | per seed |",
        "|---|---|---|---|",
    ]
    summary = {}
    for b in sizes:
        for name, values in rows.items():
            psnrs = values[str(b)]
            median = statistics.median(psnrs)
            summary[f"{name} b={b}"] = round(median, 2)
            lines.append(f"| {b} | {name} | **{median:.2f}** | {', '.join(f'{p:.1f}' for p in psnrs)} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
