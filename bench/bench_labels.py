"""Label restoration: count accuracy and exact-multiset rate per method (issue 5).

For every (model, dataset, batch size, protocol) it draws ``--batches`` seeded batches with
random labels (duplicates allowed) and a freshly initialised (untrained) model per batch,
builds the client update (FedSGD gradient, or FedAvg: 1 epoch, local batch 8, lr 0.1), and
runs every registered label method that applies.

* ``acc``   — label-count accuracy: multiset overlap with the truth divided by K (%).
* ``exact`` — share of batches whose whole label multiset is right (%).

Run: ``python bench/bench_labels.py`` (all) or e.g.
``python bench/bench_labels.py --models convnet --sizes 8 64 --batches 5``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import replace

import torch

from gradleak.core.errors import NotApplicableError
from gradleak.core.registry import DATASETS, LABEL_METHODS, MODELS
from gradleak.core.types import LocalTraining
from gradleak.data import load_dataset, sample_batch
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.metrics import label_accuracy
from gradleak.models import build_model

METHODS = ("idlg", "yin", "llg", "geng", "bias", "ilrg", "dimitrov", "lsq")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet", "convnet", "resnet20"])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "natural32"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 8, 32, 64, 128, 512])
    parser.add_argument("--protocols", nargs="+", default=["fedsgd", "fedavg"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--local-lr", type=float, default=0.1)
    parser.add_argument("--local-batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    missing = [m for m in args.models if m not in MODELS] + [d for d in args.datasets if d not in DATASETS]
    if missing:
        print(f"# not registered (skipped): {', '.join(missing)}")
    models = [m for m in args.models if m in MODELS]
    datasets = [d for d in args.datasets if d in DATASETS]
    local = LocalTraining(lr=args.local_lr, epochs=1, batch_size=args.local_batch)
    print(f"# {args.batches} batches per cell; FedAvg: 1 epoch, local batch {args.local_batch}, "
          f"lr {args.local_lr}; cells are 'acc/exact' in %; '-' = method not applicable")
    for ds_name in datasets:
        ds = load_dataset(ds_name)
        for model_name in models:
            for protocol in args.protocols:
                start = time.perf_counter()
                header = f"| {'b':>4} | " + " | ".join(f"{m:>11}" for m in args.methods) + " |"
                print(f"\n## {model_name} on {ds_name}, {protocol}\n")
                print(header)
                print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
                for b in args.sizes:
                    acc: dict[str, list[float]] = defaultdict(list)
                    diverged = 0
                    for i in range(args.batches):
                        truth = sample_batch(ds, b, seed=1000 * b + i, label_mode="random")
                        model = build_model(model_name, shape=ds.shape, num_classes=ds.num_classes,
                                            seed=i)
                        model.eval()
                        if protocol == "fedsgd":
                            update = fedsgd_update(model, truth.inputs, truth.labels)
                        else:
                            update = fedavg_update(model, truth.inputs, truth.labels, local, seed=i)
                        if not all(bool(torch.isfinite(t).all()) for t in update.tensors.values()):
                            diverged += 1   # local training blew up: no update to attack
                            continue
                        update = replace(update, meta={"input_shape": ds.shape})  # as attacks pass it
                        for m in args.methods:
                            try:
                                pred = LABEL_METHODS.get(m)(model, update)
                            except NotApplicableError:
                                continue
                            acc[m].append(label_accuracy(pred, truth.labels))
                    cells = []
                    for m in args.methods:
                        if not acc[m]:
                            cells.append(f"{'-':>11}")
                            continue
                        a = 100 * sum(acc[m]) / len(acc[m])
                        e = 100 * sum(v == 1.0 for v in acc[m]) / len(acc[m])
                        cells.append(f"{a:5.1f}/{e:5.1f}")
                    note = f" {diverged} of {args.batches} updates non-finite (skipped)" if diverged else ""
                    print(f"| {b:>4} | " + " | ".join(cells) + " |" + note, flush=True)
                print(f"\n({time.perf_counter() - start:.0f} s, 1 thread, shared 2-core machine)")


if __name__ == "__main__":
    main()
