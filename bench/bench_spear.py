"""Benchmark SPEAR (issue 4): exact batch recovery on MNIST with an MLP of hidden width 200.

Runs the same steps as ``experiment.run_scenario`` (seeded batch, model, client update,
defenses, attack, Hungarian-matched metrics) with the dataset loaded once, for ``--batches``
seeds per batch size, and prints one line per batch and a summary table. A batch counts as
*exact* when every image's max abs pixel error after Hungarian matching is below 1e-4 (``exact_fraction == 1``).

Examples::

    python bench/bench_spear.py --sizes 4,8,16,20 --batches 20
    python bench/bench_spear.py --sizes 25 --batches 5 --max-seconds 120
    python bench/bench_spear.py --sizes 20 --batches 10 --protocol fedavg --local-steps 3 --local-lr 0.01
    python bench/bench_spear.py --sizes 8,20 --batches 10 --noise 1e-4

Timings are wall-clock seconds on whatever machine runs this (single thread); on a shared
2-core machine they are inflated by other processes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradleak.core.registry import create_attack
from gradleak.core.types import LocalTraining
from gradleak.data import load_dataset, sample_batch
from gradleak.defenses.base import build_defenses
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.metrics import evaluate
from gradleak.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4,8,16,20", help="comma-separated batch sizes")
    parser.add_argument("--batches", type=int, default=20, help="batches (seeds) per size")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--width", type=int, default=200, help="hidden width of the one-layer MLP")
    parser.add_argument("--method", default="hybrid", choices=("hybrid", "sample"))
    parser.add_argument("--max-seconds", type=float, default=120.0, help="search budget per batch")
    parser.add_argument("--protocol", default="fedsgd", choices=("fedsgd", "fedavg"))
    parser.add_argument("--local-steps", type=int, default=3)
    parser.add_argument("--local-lr", type=float, default=0.01)
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian sigma added to the update")
    args = parser.parse_args()
    torch.set_num_threads(1)

    defenses = (f"noise:sigma={args.noise}",) if args.noise > 0 else ()
    setting = args.protocol + (f"(steps={args.local_steps},lr={args.local_lr})"
                               if args.protocol == "fedavg" else "")
    setting += f"+noise{args.noise:g}" if args.noise > 0 else ""
    dataset = load_dataset(args.dataset)
    rows = []
    for b in (int(s) for s in args.sizes.split(",")):
        seconds, exact, psnrs, fractions = [], 0, [], []
        for seed in range(args.first_seed, args.first_seed + args.batches):
            truth = sample_batch(dataset, b, seed=seed, label_mode="random")
            model = build_model("mlp", shape=dataset.shape, num_classes=dataset.num_classes,
                                seed=seed, widths=(args.width,))
            start = time.perf_counter()
            if args.protocol == "fedsgd":
                update = fedsgd_update(model, truth.inputs, truth.labels)
            else:
                local = LocalTraining(lr=args.local_lr, epochs=1, steps=args.local_steps)
                update = fedavg_update(model, truth.inputs, truth.labels, local, seed=seed)
            for defense in build_defenses(defenses, seed=seed):
                update = defense(update, model=model)
            attack = create_attack("spear", method=args.method, max_seconds=args.max_seconds,
                                   labels="none", seed=seed)
            rec = attack.run(model, update, shape=dataset.shape)
            wall = time.perf_counter() - start
            summary = {"metrics": evaluate(rec, truth), "seconds": rec.seconds}
            m = summary["metrics"]
            seconds.append(summary["seconds"])
            exact += m["exact_fraction"] == 1.0
            psnrs.append(m["psnr"])
            fractions.append(m["exact_fraction"])
            print(f"b={b:3d} seed={seed:3d} exact_fraction={m['exact_fraction']:.3f} "
                  f"psnr={m['psnr']:6.1f} attack_s={summary['seconds']:6.1f} wall_s={wall:6.1f}",
                  flush=True)
        rows.append((b, len(seconds), exact, statistics.mean(fractions), statistics.median(psnrs),
                     statistics.median(seconds), max(seconds)))
    print(f"\nSPEAR ({args.method}), {args.dataset}, mlp width {args.width}, untrained, {setting}, "
          f"label mode random, budget {args.max_seconds:g} s per batch")
    print("|   b | batches | all-exact batches | mean exact fraction | median PSNR | median s | max s |")
    print("|----:|--------:|------------------:|--------------------:|------------:|---------:|------:|")
    for b, n, ok, frac, psnr, med, worst in rows:
        print(f"| {b:3d} | {n:7d} | {ok:3d} ({100 * ok / n:5.1f} %) | {frac:19.3f} | {psnr:11.1f} | "
              f"{med:8.1f} | {worst:5.1f} |")


if __name__ == "__main__":
    main()
