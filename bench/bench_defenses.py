"""IG against client-side defenses on MNIST / ConvNet, b=1: GGL's four settings, DP-SGD, aggregation.

Prints one table row per defense: median (and min–max) PSNR over seeds of Inverting Gradients,
without and with the adaptive attacker (who copies the defense's deterministic part onto its
trial gradients), plus ε for DP-SGD and recovered images (PSNR ≥ 20 dB) for secure aggregation.
The pipeline is run_scenario's (same ``defend`` / ``adaptive_transform`` / attack / ``evaluate``),
with the dataset loaded once.

Usage:
    python bench/bench_defenses.py                     # everything, 5 seeds, 300 IG steps
    python bench/bench_defenses.py --part ggl --seeds 5 --steps 300
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradleak.core.registry import create_attack
from gradleak.data import load_dataset, sample_batch
from gradleak.defenses.adaptive import adaptive_transform
from gradleak.defenses.pipeline import client_seed, defend, defense_metrics
from gradleak.fl import fedsgd_update
from gradleak.metrics import evaluate
from gradleak.models import build_model

PARTS = {
    "ggl": [("none", ()), ("noise σ=0.1", ("noise:sigma=0.1",)), ("clip S=4", ("clip:norm=4",)),
            ("prune 90 %", ("prune:ratio=0.9",)), ("soteria 80 %", ("soteria:ratio=0.8",))],
    "dp": [("dpsgd ε≈1 (C=1)", ("dpsgd:epsilon=1,clip=1,delta=1e-5",)),
           ("dpsgd ε≈8 (C=1)", ("dpsgd:epsilon=8,clip=1,delta=1e-5",))],
    "agg": [("aggregate 2 clients", ("aggregate:clients=2",)), ("aggregate 8 clients", ("aggregate:clients=8",))],
}
ADAPTIVE = {"clip S=4", "prune 90 %", "soteria 80 %"}  # noise has no deterministic part to copy


def run_one(dataset, specs: tuple[str, ...], seed: int, steps: int, adaptive: bool) -> dict:
    truth = sample_batch(dataset, 1, seed=seed)
    model = build_model("convnet", shape=dataset.shape, num_classes=dataset.num_classes, seed=seed).eval()

    def make(m, x, y, trainer):
        return fedsgd_update(m, x, y, labels_leak=True, trainer=trainer)

    defended = defend(model, truth, specs, make, seed=seed,
                      sample=lambda k: sample_batch(dataset, 1, seed=client_seed(seed, k)))
    transform = adaptive_transform(defended.model, defended.update) if adaptive else None
    attack = create_attack("ig", steps=steps, seed=seed, labels="known", transform=transform)
    rec = attack.run(defended.model, defended.update, shape=dataset.shape)
    metrics = evaluate(rec, defended.truth)
    privacy = defended.update.meta.get("privacy", {})
    return {"psnr": metrics["psnr"], "seconds": rec.seconds, "noise": privacy.get("noise_multiplier"),
            **defense_metrics(defended, metrics)}


def summarise(rows: list[dict]) -> str:
    psnrs = [r["psnr"] for r in rows]
    return f"{statistics.median(psnrs):6.2f} [{min(psnrs):5.2f}–{max(psnrs):5.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", *PARTS], default="all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_dataset("mnist")
    seeds = range(args.seeds)
    print(f"ig on mnist/convnet, b=1 per client, fedsgd, labels known, {args.steps} Adam steps, "
          f"1 restart; PSNR median [min–max] over seeds {list(seeds)}")
    print(f"{'defense':<22} {'PSNR plain':>22} {'PSNR adaptive':>22}  extra")
    start = time.perf_counter()
    for part in PARTS if args.part == "all" else [args.part]:
        for label, specs in PARTS[part]:
            plain = [run_one(dataset, specs, s, args.steps, False) for s in seeds]
            adaptive = ([run_one(dataset, specs, s, args.steps, True) for s in seeds]
                        if label in ADAPTIVE else None)
            extra = ""
            if "epsilon" in plain[0]:
                extra = f"ε={plain[0]['epsilon']:.2f} δ={plain[0]['delta']:g} σ={plain[0]['noise']:.3f}"
            if "recovered" in plain[0]:
                rec = [r["recovered"] for r in plain]
                extra = f"recovered (PSNR≥20) median {statistics.median(rec):g}/{plain[0]['images']} " \
                        f"per seed {rec}"
            secs = statistics.median(r["seconds"] for r in plain)
            print(f"{label:<22} {summarise(plain):>22} {summarise(adaptive) if adaptive else '—':>22}  "
                  f"{extra} (attack {secs:.1f} s/run)", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s (2 shared CPU cores, 1 torch thread; "
          "timings inflated by other jobs)")


if __name__ == "__main__":
    main()
