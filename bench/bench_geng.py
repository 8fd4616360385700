"""Geng et al.'s claims, geng vs fedavg-unrolled over local steps, GradInversion's group term (issue 5).

Tables (PSNR in dB on [0, 1] pixels after Hungarian matching, mean over seeds):

1. ``swap``   — geng with its restored labels vs the same batch with exactly one label swapped.
2. ``fusion`` — geng on label-homogeneous batches vs distinct-label batches.
3. ``fedavg`` — geng (average gradient) vs fedavg-unrolled on FedAvg deltas after 1, 2, 5, 10
   full-batch local steps.
4. ``group``  — gradinversion with and without the group-consistency term on resnet20 (BN;
   its running statistics are first estimated on 512 held-out images, so the BN prior has
   informative targets as in a trained model), b = 4.

Run: ``python bench/bench_geng.py`` or pick parts, e.g. ``--parts swap fusion --seeds 2``.
CPU budgets are small (few hundred Adam steps); numbers are for comparison, not paper targets.
Batches come from the ``attack`` split; the BN statistics of ``group`` are estimated on the
``validation`` split, so they never include an attacked image. The published claims are in
``docs/results/geng.md`` (``make tables``).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from gradleak.core.registry import MODELS, create_attack
from gradleak.core.types import LocalTraining
from gradleak.data import load_split, sample_batch
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.inversion.bn_prior import BNStatisticsPrior
from gradleak.inversion.gradients import observed_gradient
from gradleak.inversion.matching import invert_with_labels
from gradleak.labels.resolve import resolve_labels
from gradleak.metrics import evaluate
from gradleak.models import Normalize, build_model


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):6.2f}" if values else "   n/a"


def part_swap(args: argparse.Namespace) -> None:
    ds = load_split(args.dataset, {}, "attack")
    rows: dict[str, list[float]] = {"restored labels": [], "one label swapped": []}
    restored_right = 0
    for seed in range(args.seeds):
        truth = sample_batch(ds, args.batch, seed=seed, label_mode="random")
        model = build_model(args.model, shape=ds.shape, num_classes=ds.num_classes, seed=seed).eval()
        update = fedsgd_update(model, truth.inputs, truth.labels)
        labels, _ = resolve_labels(model, update, "geng", shape=ds.shape)
        restored_right += int(sorted(labels.tolist()) == sorted(truth.labels.tolist()))
        swapped = labels.clone()
        swapped[0] = (labels[0] + 1) % ds.num_classes
        target = observed_gradient(model, update)
        for name, lab in [("restored labels", labels), ("one label swapped", swapped)]:
            rec = invert_with_labels(model, target, lab, shape=ds.shape, steps=args.steps, lr=0.1,
                                     tv=1e-2, bn_weight=0.0, bn_prior=BNStatisticsPrior(model),
                                     restarts=1, distance="cosine", signed=True, seed=seed)
            rows[name].append(evaluate(rec, truth)["psnr"])
    print(f"\n### Claim 1: one wrong label ({args.model}/{args.dataset}, b={args.batch}, "
          f"{args.steps} steps, {args.seeds} seeds; geng labels exact in {restored_right}/{args.seeds})\n")
    print("| labels | PSNR |\n|---|---|")
    for name, vals in rows.items():
        print(f"| {name} | {_mean(vals)} |")


def part_fusion(args: argparse.Namespace) -> None:
    ds = load_split(args.dataset, {}, "attack")
    print(f"\n### Claim 2: fusion of same-label images ({args.model}/{args.dataset}, b={args.batch}, "
          f"{args.steps} steps, {args.seeds} seeds, geng with restored labels)\n")
    print("| batch labels | PSNR | labels exact |\n|---|---|---|")
    for mode, name in [("same", "label-homogeneous"), ("distinct", "distinct labels")]:
        psnrs, exact = [], 0
        for seed in range(args.seeds):
            truth = sample_batch(ds, args.batch, seed=seed, label_mode=mode)
            model = build_model(args.model, shape=ds.shape, num_classes=ds.num_classes, seed=seed).eval()
            update = fedsgd_update(model, truth.inputs, truth.labels)
            rec = create_attack("geng", steps=args.steps, seed=seed).run(model, update, shape=ds.shape)
            m = evaluate(rec, truth)
            psnrs.append(m["psnr"])
            exact += int(m["label_accuracy"] == 1.0)
        print(f"| {name} | {_mean(psnrs)} | {exact}/{args.seeds} |")


def part_fedavg(args: argparse.Namespace) -> None:
    ds = load_split(args.dataset, {}, "attack")
    print(f"\n### geng vs fedavg-unrolled on FedAvg ({args.model}/{args.dataset}, b={args.batch}, "
          f"full-batch local steps, local lr {args.local_lr}, {args.steps} attack steps, "
          f"{args.seeds} seeds, labels restored: geng→geng, fedavg-unrolled→dimitrov)\n")
    print("| local steps | geng PSNR | fedavg-unrolled PSNR | seconds (geng / unrolled) |\n|---|---|---|---|")
    for steps in args.local_steps:
        res: dict[str, list[float]] = {"geng": [], "fedavg-unrolled": []}
        secs: dict[str, float] = {"geng": 0.0, "fedavg-unrolled": 0.0}
        for seed in range(args.seeds):
            truth = sample_batch(ds, args.batch, seed=seed, label_mode="random")
            model = build_model(args.model, shape=ds.shape, num_classes=ds.num_classes, seed=seed).eval()
            local = LocalTraining(lr=args.local_lr, steps=steps)
            update = fedavg_update(model, truth.inputs, truth.labels, local, seed=seed)
            for name in res:
                rec = create_attack(name, steps=args.steps, seed=seed).run(model, update, shape=ds.shape)
                res[name].append(evaluate(rec, truth)["psnr"])
                secs[name] += rec.seconds / args.seeds
        print(f"| {steps} | {_mean(res['geng'])} | {_mean(res['fedavg-unrolled'])} | "
              f"{secs['geng']:.0f} / {secs['fedavg-unrolled']:.0f} |", flush=True)


def small_bn_convnet(shape: tuple[int, int, int], num_classes: int, seed: int) -> nn.Module:
    """A small ReLU ConvNet with BatchNorm (for machines too slow for resnet20)."""
    c, h, w = shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            Normalize(), nn.Conv2d(c, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * ((h + 1) // 2) * ((w + 1) // 2), num_classes))


def part_group(args: argparse.Namespace) -> None:
    model_name = args.group_model
    if model_name != "bnconv" and model_name not in MODELS:
        print(f"\n### group: {model_name} is not registered; skipped")
        return
    ds = load_split(args.group_dataset, {}, "attack")
    held_out = load_split(args.group_dataset, {}, "validation").inputs[:512]
    print(f"\n### gradinversion with/without group consistency ({model_name}/{args.group_dataset}, b=4, "
          f"{args.group_steps} steps, 4 seeds in the group, {args.seeds} batches; BN running statistics "
          f"estimated on 512 held-out images; labels: yin)\n")
    print("| variant | PSNR | BN prior |\n|---|---|---|")
    rows: dict[str, list[float]] = {"with group (α=0.01)": [], "without group": []}
    source = ""
    for seed in range(args.seeds):
        truth = sample_batch(ds, 4, seed=seed, label_mode="distinct")
        if model_name == "bnconv":
            model = small_bn_convnet(ds.shape, ds.num_classes, seed)
        else:
            model = build_model(model_name, shape=ds.shape, num_classes=ds.num_classes, seed=seed)
        model.train()
        with torch.no_grad():
            for chunk in held_out.split(128):
                model(chunk)
        model.eval()
        update = fedsgd_update(model, truth.inputs, truth.labels)
        for name, weight in [("with group (α=0.01)", 1e-2), ("without group", 0.0)]:
            attack = create_attack("gradinversion", steps=args.group_steps, seeds=4, group=weight, seed=seed)
            rec = attack.run(model, update, shape=ds.shape)
            rows[name].append(evaluate(rec, truth)["psnr"])
            source = rec.info["bn_prior"]
    for name, vals in rows.items():
        print(f"| {name} | {_mean(vals)} | {source} |")


PARTS = {"swap": part_swap, "fusion": part_fusion, "fedavg": part_fedavg, "group": part_group}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--local-lr", type=float, default=0.1)
    parser.add_argument("--local-steps", nargs="+", type=int, default=[1, 2, 5, 10])
    parser.add_argument("--group-dataset", default="natural32")
    parser.add_argument("--group-model", default="resnet20", help="resnet20 or bnconv (built here)")
    parser.add_argument("--group-steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for part in args.parts:
        start = time.perf_counter()
        PARTS[part](args)
        print(f"\n({time.perf_counter() - start:.0f} s wall, 1 thread, shared 2-core machine)", flush=True)


if __name__ == "__main__":
    main()
