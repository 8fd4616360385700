"""Does IG's late TV fall (``tv_late=0.01`` from 5/8 of the run) help at other batch sizes? Validation only.

Usage:
    python bench/ig_tv_late_sizes.py --batch-size 8 --seeds 100-119 --out docs/results/ig_tv_late_b8.md
    python bench/ig_tv_late_sizes.py --batch-size 2 --seeds 120-159 --no-write

Why: at b=4 a TV weight lowered from 0.05 to 0.01 at 5/8 of the run beat the constant weight on
validation seeds 100-119 and again on fresh seeds 120-159 (``ig_b4_tv_schedule.md``,
``ig_b4_tv_confirm.md``) and became ``ig``'s default there (``tv_late``). This script asks the same
of another batch size, with the rule fixed before its runs: ``tv_late=0.01`` becomes ``ig``'s
default at that batch size only if it is ahead of the constant ``tv="auto"`` weight in mean paired
PSNR by more than twice its standard error on seeds 100-119 and again on 120-159.

Scenario as ``bench_ig_quality.py``: ``ig`` itself, the untrained ``convnet`` (seed = the run's
seed), embedded MNIST, the batch drawn with the run's seed from ``validation``, FedSGD, labels
known, eval mode, 1000 steps, lr 0.05, one torch thread per worker.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ig_quality import ig_psnr, parse_seeds  # noqa: E402
from ig_b4_variants import run_jobs, summary  # noqa: E402
from tune_ig_tv import validation_and_mnist  # noqa: E402

CONSTANT, LATE = "constant tv (auto)", "tv_late 0.01"
"""The two rows: ``ig`` with ``tv_late`` equal to its auto ``tv``, and with ``tv_late=0.01``."""


def one_run(job: tuple[str, int, int]) -> dict:
    """PSNR of one row on one validation batch: ``job = (row, seed, batch size)``."""
    from gradleak.attacks.ig import auto_tv
    from gradleak.data import sample_indices

    torch.set_num_threads(1)
    name, seed, b = job
    split, full = validation_and_mnist()
    idx = split.indices[sample_indices(split, b, seed=seed)]
    options = {"steps": 1000, "tv_late": auto_tv(b) if name == CONSTANT else 0.01}
    return {"variant": name, "seed": seed, "psnr": ig_psnr(full, idx, seed, options)}


def verdict(row: list[str]) -> str:
    """Whether ``tv_late 0.01``'s row (from :func:`summary`) passes this stage of the rule.

    Example:
        >>> verdict([LATE, "20", "21", "12/20", "+0.90", "0.38"])
        'Ahead by more than twice its standard error (+0.90 ± 0.38 dB): this stage passes.'
        >>> verdict([LATE, "20", "21", "9/20", "+0.30", "0.40"])
        'Not ahead by more than twice its standard error (+0.30 ± 0.40 dB): tv_late stays off at this batch size.'
    """
    diff, err = float(row[4]), float(row[5])
    if diff > 2 * err:
        return f"Ahead by more than twice its standard error ({row[4]} ± {row[5]} dB): this stage passes."
    return (f"Not ahead by more than twice its standard error ({row[4]} ± {row[5]} dB): tv_late stays off at "
            "this batch size.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--seeds", default="100-119", help="validation seeds, e.g. 100-119")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None, help="the Markdown file to write (default: print only)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args()
    from gradleak.attacks.ig import auto_tv

    seeds, b = parse_seeds(args.seeds), args.batch_size
    jobs = [(v, s, b) for s in seeds for v in (CONSTANT, LATE)]
    runs = run_jobs(one_run, jobs, args.workers)
    rows = summary(runs, seeds, (CONSTANT, LATE), CONSTANT)
    out = f" --out {args.out}" if args.out else ""
    text = "\n".join([
        f"# IG at b={b}: a TV weight lowered to 0.01 at 5/8 of the run, on validation digits", "",
        f"Written by `python bench/ig_tv_late_sizes.py --batch-size {b} --seeds {args.seeds}{out}` (torch "
        f"{torch.__version__}, 1 thread per worker, {platform.machine()}, Python {platform.python_version()}). "
        f"Validation split only: seeds {args.seeds}, b={b}, labels known, 1000 steps, lr 0.05; constant: "
        f"tv={auto_tv(b):g} throughout (`tv=\"auto\"`); tv_late 0.01: tv={auto_tv(b):g}, then 0.01 from 5/8 of "
        "the run (the best iterate chosen with 0.01). Rule fixed before the runs: tv_late 0.01 becomes the "
        "default at this batch size only if ahead by more than twice its standard error on seeds 100-119 and "
        "again on 120-159.", "",
        "| row | median PSNR (dB) | mean PSNR (dB) | seeds ahead of constant | mean paired difference (dB) "
        "| its standard error (dB) |",
        "|---|---|---|---|---|---|",
        *["| " + " | ".join(r) + " |" for r in rows], "",
        verdict(rows[1]), "",
    ])
    print(text)
    if args.out and not args.no_write:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
