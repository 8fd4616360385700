"""Geng et al.'s claim that one wrong label ruins the batch, on attack-split MNIST (cached, resumable).

For each seed: an attack-split batch of 4 (random labels), the untrained ReLU convnet, FedSGD;
geng's own restored label multiset; image restoration with those labels and with the first one
swapped to the next class, 300 signed-Adam steps each (geng's defaults otherwise). No scenario
can swap a label, so this runs outside the sweep store; each finished (seed, variant) is
appended to ``runs/tables/geng_swap.json`` at once, so a killed run resumes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from gradleak.core.registry import create_attack
from gradleak.core.types import GroundTruth
from gradleak.data import load_split, sample_indices
from gradleak.fl import fedsgd_update
from gradleak.inversion.bn_prior import BNStatisticsPrior
from gradleak.inversion.gradients import observed_gradient
from gradleak.inversion.matching import invert_with_labels
from gradleak.labels.resolve import resolve_labels
from gradleak.metrics import evaluate
from gradleak.models import build_model

SEEDS = range(5)
BATCH, STEPS = 4, 300


def run(cache: Path, log: Any = print) -> dict[str, dict[str, Any]]:
    """Every (seed, variant) result, computing the missing ones."""
    done: dict[str, dict[str, Any]] = json.loads(cache.read_text()) if cache.exists() else {}
    pool = load_split("mnist", {}, "attack")
    geng = create_attack("geng")  # only for its defaults
    for seed in SEEDS:
        if all(f"{seed}:{v}" in done for v in ("restored", "swapped")):
            continue
        idx = sample_indices(pool, BATCH, seed=seed)
        truth = GroundTruth(pool.inputs[idx], pool.labels[idx])
        model = build_model("convnet", shape=pool.shape, num_classes=10, seed=seed).eval()
        update = fedsgd_update(model, truth.inputs, truth.labels)
        labels, _ = resolve_labels(model, update, "geng", shape=pool.shape)
        swapped = labels.clone()
        swapped[0] = (labels[0] + 1) % 10
        target = observed_gradient(model, update)
        for variant, lab in (("restored", labels), ("swapped", swapped)):
            key = f"{seed}:{variant}"
            if key in done:
                continue
            start = time.perf_counter()
            rec = invert_with_labels(model, target, lab, shape=pool.shape, steps=STEPS, lr=geng.lr, tv=geng.tv,
                                     bn_weight=geng.bn, bn_prior=BNStatisticsPrior(model, update), restarts=1,
                                     distance=geng.distance, signed=geng.signed, seed=seed)
            m = evaluate(rec, truth)
            done[key] = {"psnr": m["psnr"], "ssim": m["ssim"], "labels": lab.tolist(),
                         "truth": sorted(truth.labels.tolist()), "indices": pool.indices[idx].tolist(),
                         "restored_exact": sorted(labels.tolist()) == sorted(truth.labels.tolist()),
                         "seconds": time.perf_counter() - start, "evaluations": STEPS,
                         "versions": {"torch": torch.__version__}}
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(done, indent=1, sort_keys=True))
            log(f"  geng_swap seed={seed} {variant} psnr={m['psnr']:.2f}")
    return done
