"""The cases of ``bench/bench_spear.py``: how one SPEAR run is set up, run and scored.

A case fixes the dataset, the hidden width of a one-layer ``mlp`` (untrained, seeded like the
batch), the batch size, the client protocol (FedSGD, or FedAvg with full-batch local steps), an
optional DP-SGD defense, an optional change to the batch (a duplicate, a near-duplicate) and the
attack's options and budget. Seeds 0..n−1 draw the batch (``sample_batch``, label mode random,
from the ``attack`` split; the model is untrained, so no sample was ever used for training), the
model and the attack's sampler.

The batch is drawn from the dataset's ``attack`` split (``load_split(name, {}, "attack")``,
:mod:`gradleak.data.splits`), as ``run_scenario`` draws it: no scored batch can be one that chose
a hyper-parameter (``validation``) or trained anything (``train``). The split is part of a case's
cache key (``|split=attack``); records measured before it (drawn from the whole dataset) have keys
without it and are not shown in the report.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from gradleak.core.registry import create_attack
from gradleak.core.types import GroundTruth, LocalTraining
from gradleak.data import sample_batch
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.metrics import evaluate
from gradleak.models import build_model

INFO_KEYS = ("complete", "samples_verified", "distinct", "multiplicity", "stopped", "peeled",
             "directions_found", "residual_w", "residual_floor_w", "noise_limited", "verified_by",
             "error_bar", "rank_spectrum_gap", "from_structure", "rejected_by_span", "finish_reserve")
SPLIT = "attack"
"""The split every scored batch is drawn from (:mod:`gradleak.data.splits`)."""


def load_cases_dataset(name: str, split: str = SPLIT) -> Any:
    """The ``split`` of dataset ``name`` that a case's batches are drawn from."""
    from gradleak.data.splits import load_split

    return load_split(name, {}, split)


@dataclass(frozen=True)
class Case:
    """One benchmark case (see the module doc)."""

    section: str
    dataset: str
    b: int
    width: int
    budget: float = 300.0
    steps: int = 0                 # FedAvg full-batch local steps (0: FedSGD)
    lr: float = 0.01
    dp_sigma: float = 0.0          # DP-SGD noise multiplier (clip 1)
    change: str = ""               # "", "dup", "dup-label", "near:<eps>"
    options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    label: str = ""
    split: str = SPLIT

    @property
    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return (f"{self.section}|{self.dataset}|b={self.b}|w={self.width}|T={self.budget:g}|steps={self.steps}"
                f"|lr={self.lr:g}|dp={self.dp_sigma:g}|{self.change}|{opts}|split={self.split}")


def change_batch(truth: GroundTruth, change: str, seed: int) -> GroundTruth:
    """The batch with its last sample replaced by a copy (or near-copy) of the first."""
    x, y = truth.inputs.clone(), truth.labels.clone()
    if change in ("dup", "dup-label"):
        x[-1] = x[0]
        y[-1] = y[0] if change == "dup" else (y[0] + 1) % 10
    elif change.startswith("near:"):
        eps = float(change.split(":")[1])
        noise = torch.randn(x[0].shape, generator=torch.Generator().manual_seed(10_000 + seed))
        x[-1] = (x[0] + eps * noise).clamp(0, 1)
        y[-1] = y[0]
    return GroundTruth(x, y)


def run_case(case: Case, dataset: Any, seed: int) -> dict[str, Any]:
    """Run one seed of ``case``; returns the record stored in the cache."""
    truth = change_batch(sample_batch(dataset, case.b, seed=seed, label_mode="random"), case.change, seed)
    model = build_model("mlp", shape=dataset.shape, num_classes=dataset.num_classes, seed=seed,
                        widths=(case.width,))
    trainer = None
    if case.dp_sigma > 0:
        from gradleak.defenses.dpsgd import DPSGD

        trainer = DPSGD(noise=case.dp_sigma, clip=1.0, seed=seed)
    if case.steps:
        update = fedavg_update(model, truth.inputs, truth.labels,
                               LocalTraining(lr=case.lr, epochs=1, steps=case.steps), seed=seed,
                               trainer=trainer)
    else:
        update = fedsgd_update(model, truth.inputs, truth.labels, trainer=trainer)
    if trainer is not None:
        update = trainer(update)
    attack = create_attack("spear", max_seconds=case.budget, labels="none", seed=seed, **dict(case.options))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    rec = attack.run(model, update, shape=dataset.shape)
    wall = time.perf_counter() - start
    metrics = evaluate(rec, truth)
    err = (rec.inputs.double()[metrics["matching"]] - truth.inputs.double()).reshape(case.b, -1)
    record = {"key": case.key, "seed": seed, "exact_fraction": metrics["exact_fraction"],
              "psnr": metrics["psnr"], "rmse": float(err.pow(2).mean().sqrt()),
              "rmse_per_image": err.pow(2).mean(1).sqrt().tolist(), "seconds": wall,
              "attack_seconds": rec.seconds, "load_before": load_before, "load_after": os.getloadavg()[0]}
    for k in INFO_KEYS:
        if k in rec.info:
            v = rec.info[k]
            record[k] = v if not isinstance(v, float) or math.isfinite(v) else str(v)
    if "error_bar" in rec.info and len(rec.info["error_bar"]) == case.b:   # in the truth's order
        record["error_bar"] = [rec.info["error_bar"][j] for j in metrics["matching"]]
    return record


def grid(sizes: list[int], widths: list[int], datasets: list[str], budget: float) -> list[Case]:
    """The issue-19 table, most important cells first: b=64 at widths 500/1000 and b=32 at
    width 200 on MNIST, the rest of MNIST (larger b first), then natural32 in the same order."""
    def rank(ds: str, b: int, w: int) -> tuple:
        first = (b == 64 and w >= 500) or (b == 32 and w == 200)
        return (datasets.index(ds), not first, -b, w)

    cells = [(ds, b, w) for ds in datasets for b in sizes for w in widths]
    return [Case("grid", ds, b, w, budget) for ds, b, w in sorted(cells, key=lambda c: rank(*c))]


def extras(budget: float) -> list[Case]:
    """FedAvg, duplicates, near-duplicates, DP-SGD (MNIST, width 200 unless said)."""
    out = []
    for lr in (0.01, 0.1):
        for b in (8, 16):
            out.append(Case("fedavg", "mnist", b, 200, budget, steps=5, lr=lr))
    for change in ("dup", "dup-label"):
        out.append(Case("duplicates", "mnist", 16, 200, budget, change=change))
    for eps in ("1e-2", "1e-3"):
        out.append(Case("duplicates", "mnist", 16, 200, budget, change=f"near:{eps}"))
    for sigma in (1e-5, 1e-4, 1e-3):
        out.append(Case("dp", "mnist", 8, 200, budget, dp_sigma=sigma))
    return out


def ideas(budget: float) -> list[Case]:
    """Each idea switched off in turn, on the cells where it matters (budget as given)."""
    variants = (("paper: uniform sampling", (("method", "sample"),)),
                ("issue 4: hybrid, no peeling", (("peel", False),)),
                ("peeling, exact reads only", (("mixtures", False),)),
                ("peeling + contaminated reads (default)", ()))
    cells = (("mnist", 32, 200), ("mnist", 64, 500), ("natural32", 25, 1000), ("natural32", 32, 1000))
    return [Case("ideas", ds, b, w, budget, options=opts, label=label)
            for ds, b, w in cells for label, opts in variants]
