"""IG quality after the best-iterate and TV changes: median PSNR over seeds, this tree against a baseline tree.

Usage:
    python bench/bench_ig_quality.py --baseline-src /path/to/main/src   # writes docs/results/ig_quality.md
    python bench/bench_ig_quality.py --seeds 0-4 --steps 1000           # the defaults
    python bench/bench_ig_quality.py --baseline-src BASE --seeds 0-99 --defaults-only --out PAGE  # 100 seeds
    python bench/bench_ig_quality.py --json-only BATCHES.json           # numbers of the importable gradleak

Scenario: ``ig`` on the untrained ``convnet`` (seed = the run's seed), embedded MNIST (the batch from
the ``attack`` split, chosen in this process and handed to the baseline by index), FedSGD, labels
known, batch sizes 1 and 4, 1000 steps, one torch thread. This tree runs three times: its defaults
(``tv=auto``: the weight chosen per batch size on the validation split by ``bench/tune_ig_tv.py``,
and ``keep=best``, the lowest-loss iterate), then at the old TV default ``tv=0.01`` with
``keep=best`` and with ``keep=last`` (the final iterate, what the loop returned before); the
baseline tree (e.g. ``git worktree add /tmp/base b7a99b5``) runs in a subprocess, beside, with its own code
and defaults. PSNRs are deterministic on one machine and thread count, but the optimisation is chaotic:
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
import tempfile
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "ig_quality.md"
EARLIER = {  # per page: the claims its table replaces (historical numbers, with the commits that measured them)
    "ig_quality.md":
        "Earlier claims, replaced by this table: commit 6af9bc1 (IG's TV weight constant, 0.05 at b=4; the "
           "same code as this table's but for tv_late) measured, on this machine, this tree's defaults at 42.64 dB "
           "at b=1 and 28.84 dB at b=4 against the baseline's 40.66 and 34.73 (its b=1 rows and the tv=0.01 rows "
           "are this table's code too). Before that, commit 2f4bc5e measured this tree's defaults (code of "
           "28dc557, whose IG single runs are unchanged since) at 42.99 dB at b=1 and 29.67 dB at b=4 against "
           "the baseline's 43.01 and 33.82, in an earlier session on another machine (same torch build). The "
           "code did not change (d9bfb25, run here, gives this table's b=1 numbers on seeds 0-2, the ones "
           "checked); the machine did: a chaotic "
           "optimisation's float rounding differs between CPUs, so single seeds move by several dB from one "
           "machine to the next. Before that, commit fd5d244 (tv=0.01 for every batch size, keep=best) "
           "measured 42.42 dB at b=1 and 33.81 dB at b=4 against the same baseline's 43.01 and 33.82 on these "
           "images; commit 776db1e measured on images drawn from all 5000 MNIST digits (not the attack "
           "split), baseline 37.69 vs keep=best 37.94 dB at b=1 and 25.52 vs 27.97 dB at b=4.",
    "ig_quality_20seeds.md":
        "Earlier claims, replaced by this table: commit 6af9bc1 (IG's TV weight constant, 0.05 at b=4; the "
          "same code as this table's but for tv_late) measured, on this machine, this tree's defaults at 41.11 dB "
          "at b=1 and 26.98 dB at b=4 against the baseline's 40.03 and 24.56 (medians; at b=4 ahead on 8 of 20 "
          "seeds, mean paired difference -1.02 dB). Before that, commit 2f4bc5e measured, over seeds 0-19 in an "
          "earlier session on another machine (same torch build), this tree's defaults (code of 28dc557, whose IG "
          "single runs are unchanged since) at 40.54 dB at b=1 and 26.84 dB at b=4 against the baseline's "
          "40.60 and 23.26 (medians; +3.58 dB at b=4). Its per-seed columns gave, at b=4, this tree ahead on "
          "9 of 20 seeds with equal means (25.47 vs 25.49 dB): the median's lead was not a difference in the "
          "mean.",
}
PURPOSE = {  # per page: why it was run, when that is not the table's own claim
    "ig_quality.md":
        "How far a median over 5 seeds moves by chance, the same comparison over 100 seeds: "
        "`ig_quality_100seeds.md`.",
    "ig_quality_100seeds.md":
        "Why 100 seeds: issue 15 asks that IG's median over seeds 0-4 be at least the baseline's. This page "
        "measures how often a median over 5 seeds falls short by chance, and the paired difference with its "
        "standard error. It chooses nothing: no default or option was set from these attack-split seeds. The "
        "rule for reading it was written down before seeds 20-99 ran: if at neither batch size this tree is "
        "behind by more than twice the standard error, the seeds 0-4 shortfall is reported as chance.",
}
BASE, DEFAULT = "baseline (its defaults)", "this tree, defaults"


def parse_seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def attack_batches(seeds: list[int], batch_sizes: list[int]) -> dict[str, list[list[int]]]:
    """Per batch size, per seed: the positions in the whole MNIST set of the batch a run with that
    seed attacks (drawn from the ``attack`` split, as ``run_scenario`` draws it)."""
    from gradleak.data import load_split, sample_indices

    ds = load_split("mnist", {}, "attack")
    return {str(b): [ds.indices[sample_indices(ds, b, seed=s)].tolist() for s in seeds] for b in batch_sizes}


def scenario(ds: Any, idx: Any, seed: int) -> tuple[Any, Any, Any, Any]:
    """``(x, y, model, update)``: the digits at positions ``idx`` of the whole MNIST set ``ds`` and the
    client's update of them, as ``run_scenario`` builds this scenario: the untrained convnet with the
    run's seed, eval mode, FedSGD, labels leaked. Only calls every compared tree has."""
    from gradleak import build_model, fedsgd_update

    x, y = ds.inputs[idx].clone(), ds.labels[idx].clone()
    model = build_model("convnet", shape=ds.shape, num_classes=ds.num_classes, seed=seed).eval()
    return x, y, model, fedsgd_update(model, x, y, labels_leak=True)


def ig_psnr(ds: Any, idx: Any, seed: int, options: dict) -> float:
    """PSNR of one ``ig`` run (``options``, labels known, the run's seed) on :func:`scenario`'s update
    (``tune_ig_tv.py`` and ``ig_b4_variants.py`` use it too)."""
    from gradleak import create_attack, evaluate
    from gradleak.core.types import GroundTruth

    x, y, model, update = scenario(ds, idx, seed)
    rec = create_attack("ig", seed=seed, labels="known", **options).run(model, update, shape=ds.shape)
    return float(evaluate(rec, GroundTruth(x, y))["psnr"])


def measure(seeds: list[int], steps: int, batches: dict[str, list[list[int]]],
            options: dict) -> dict[str, list[float]]:
    """PSNR per seed for every batch size; ``options`` beyond ``steps`` (``{}``: the tree's defaults,
    for trees without ``keep`` or ``tv="auto"``).

    Only calls that exist in every tree compared (``load_dataset``, ``build_model``, ``fedsgd_update``,
    ``create_attack``, ``evaluate``), doing what ``run_scenario`` does for this scenario (eval mode,
    labels leaked and known, the run's seed for the model and the attack), on the same images.
    """
    from gradleak import load_dataset

    ds = load_dataset("mnist")
    options = {"steps": steps, **options}
    out = {}
    for b, per_seed in batches.items():
        out[b] = [ig_psnr(ds, idx, s, options) for s, idx in zip(seeds, per_seed)]
        print(f"  b={b} {options}: {[round(p, 2) for p in out[b]]}", file=sys.stderr, flush=True)
    return out


def revision(src: str) -> str:
    """The git commit of the tree holding ``src`` (``?`` outside git)."""
    root = Path(src).resolve().parent if Path(src).is_absolute() else Path(__file__).resolve().parents[1]
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True).stdout.strip()
    return (done.stdout.strip() or "?") + (" with uncommitted changes in src/" if dirty else "")


def paired_difference(diffs: list[float]) -> tuple[int, float, float | None]:
    """Seeds ahead, the mean paired difference and its standard error (``stdev / sqrt(n)``; ``None``
    for one seed): the statistics every paired comparison in ``bench/`` reports.

    Example:
        >>> paired_difference([1.0, -1.0, 3.0])
        (2, 1.0, 1.1547005383792517)
    """
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else None
    return sum(d > 0 for d in diffs), statistics.mean(diffs), se


def paired(b: int, ours: list[float], base: list[float], seeds: list[int], block: int = 5) -> str:
    """One line on the spread: seeds won, the mean paired difference with its standard error (over
    2 seeds or more), and (over 10 seeds or more) the medians of consecutive ``block``-seed blocks,
    whose differences show how far a median over ``block`` seeds moves by chance (listed up to four
    blocks, counted beyond).

    Example:
        >>> paired(4, [1.0, 3.0], [2.0, 2.0], [0, 1])
        '- b=4, per seed: this tree ahead on 1 of 2 seeds; mean paired difference +0.00 +- 1.00 dB.'
        >>> print(paired(1, [1.0] * 30, [0.0] * 10 + [2.0] * 20, list(range(30))))  # doctest: +NORMALIZE_WHITESPACE
        - b=1, per seed: this tree ahead on 10 of 30 seeds; mean paired difference -0.33 +- 0.18 dB. Medians of
        5-seed blocks, this tree vs baseline: this tree's median at least the baseline's in 2 of 6 blocks; the
        first: seeds 0-4: 1.0 vs 0.0 (+1.0).
    """
    wins, mean, se = paired_difference([o - p for o, p in zip(ours, base, strict=True)])
    text = (f"- b={b}, per seed: this tree ahead on {wins} of {len(ours)} seeds; mean paired difference "
            f"{mean:+.2f}{'' if se is None else f' +- {se:.2f}'} dB.")
    if len(seeds) >= 2 * block:
        blocks, held = [], 0
        for i in range(0, len(seeds) - block + 1, block):
            mo, mb = statistics.median(ours[i:i + block]), statistics.median(base[i:i + block])
            held += mo >= mb
            blocks.append(f"seeds {seeds[i]}-{seeds[i + block - 1]}: {mo:.1f} vs {mb:.1f} ({mo - mb:+.1f})")
        counted = (f"this tree's median at least the baseline's in {held} of {len(blocks)} blocks; "
                   f"the first: {blocks[0]}")
        text += f" Medians of {block}-seed blocks, this tree vs baseline: " + (
            "; ".join(blocks) if len(blocks) <= 4 else counted) + "."
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--baseline-src", default=None, help="the src/ folder of the tree to compare with")
    parser.add_argument("--out", default=str(RESULTS), help="the Markdown file to write")
    parser.add_argument("--defaults-only", action="store_true",
                        help="this tree at its defaults only (no tv=0.01 rows): a cheaper run over more seeds")
    parser.add_argument("--json-only", default=None, help="a JSON file of batches: print this tree's default "
                        "numbers on them as JSON (the baseline's subprocess)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds, sizes = parse_seeds(args.seeds), [int(b) for b in args.batch_sizes.split(",")]
    if args.json_only:  # the baseline tree's process: its own code, which may have no auto_tv
        print(json.dumps(measure(seeds, args.steps, json.loads(Path(args.json_only).read_text()), {})))
        return
    from gradleak.attacks.ig import LR, auto_tv, auto_tv_late

    batches = attack_batches(seeds, sizes)
    rows, base = {}, None
    if args.baseline_src:  # the baseline's subprocess runs beside this tree's runs (PSNRs only, no timing)
        env = {**os.environ, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(batches, f)
        cmd = [sys.executable, __file__, "--json-only", f.name, "--seeds", args.seeds, "--steps", str(args.steps),
               "--batch-sizes", args.batch_sizes]
        base = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        rows[DEFAULT] = measure(seeds, args.steps, batches, {})
        if base is not None:
            stdout, _ = base.communicate()
            if base.returncode:
                sys.exit(f"the baseline's run failed (exit {base.returncode}); its errors are above")
            rows = {BASE: json.loads(stdout.strip().splitlines()[-1]), **rows}
    finally:  # if this tree's runs fail, the baseline's stops too; its input file goes either way
        if base is not None:
            base.kill()  # a no-op once it has been waited for
            os.unlink(f.name)
    if not args.defaults_only:
        old = {"lr": 0.1, "tv": 0.01}  # the defaults until December 2026
        rows["this tree, lr=0.1, tv=0.01, keep=best"] = measure(seeds, args.steps, batches, {**old, "keep": "best"})
        rows["this tree, lr=0.1, tv=0.01, keep=last"] = measure(seeds, args.steps, batches, {**old, "keep": "last"})
    lines = [
        "# IG quality: this tree's defaults against the code of issue 15's start",
        "",
        f"Written by `python bench/bench_ig_quality.py{' --baseline-src BASE' if args.baseline_src else ''}"
        f" --seeds {args.seeds} --steps {args.steps}{' --defaults-only' if args.defaults_only else ''}"
        f"{'' if args.out == str(RESULTS) else ' --out ' + os.path.relpath(args.out)}` "
        f"(torch {torch.__version__}, 1 thread, "
        f"{platform.machine()}, Python {platform.python_version()}). This tree: {revision('src')}; baseline: "
        f"{args.baseline_src or 'none'}{f' at {revision(args.baseline_src)}' if args.baseline_src else ''}.",
        "",
        f"`ig` on the untrained `convnet` (seed = the run's seed), embedded MNIST, the batch drawn with the "
        f"run's seed from the `attack` split (the same images for both trees), FedSGD, labels known, eval mode, "
        f"{args.steps} steps, seeds {args.seeds}, default options otherwise. The baseline's defaults: lr=0.1, "
        f"tv=0.01, the last iterate. This tree's defaults: lr={LR:g} and tv=auto (chosen on the validation "
        "split, seeds 100-109: `ig_tv_validation.md`; tv "
        + ", ".join(f"{auto_tv(b):g} at b={b}" + ("" if auto_tv_late(b) == auto_tv(b) else
                                                    f", {auto_tv_late(b):g} from 5/8 of the run on") for b in sizes)
        + ("; the fall chosen on validation seeds 100-119 and confirmed on 120-159: `ig_b4_tv_schedule.md`, "
           "`ig_b4_tv_confirm.md`" if any(auto_tv_late(b) != auto_tv(b) for b in sizes) else "")
        + "), the lowest-loss iterate.",
        "PSNR in dB after Hungarian matching.",
        "",
        "| b | code | median PSNR | mean PSNR | per seed |",
        "|---|---|---|---|---|",
    ]
    summary = {}
    for b in sizes:
        for name, values in rows.items():
            psnrs = values[str(b)]
            median = statistics.median(psnrs)
            summary[f"{name} b={b}"] = round(median, 2)
            lines.append(f"| {b} | {name} | **{median:.2f}** | {statistics.mean(psnrs):.2f} | "
                         f"{', '.join(f'{p:.1f}' for p in psnrs)} |")
    if args.baseline_src:
        diffs = ", ".join(f"b={b}: {summary[f'{DEFAULT} b={b}'] - summary[f'{BASE} b={b}']:+.2f} dB" for b in sizes)
        lines += ["", f"This tree's defaults against the baseline's, median: {diffs}.", ""]
        lines += [paired(b, rows[DEFAULT][str(b)], rows[BASE][str(b)], seeds) for b in sizes]
    out = Path(args.out)
    if out.name in PURPOSE:
        lines += ["", PURPOSE[out.name]]
    if args.baseline_src and out.name in EARLIER:
        lines += ["", EARLIER[out.name]]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
