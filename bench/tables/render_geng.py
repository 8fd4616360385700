"""``docs/results/geng.md`` (Geng's claims with geng's own counts) and ``docs/results/spear_exact.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import against_previous, f1, median, provenance, stored, table, write

# README before issue 14 (whole pool, 20 batches; 10 at b = 25, 7 of them exact)
SPEAR_BEFORE = {4: 172.1, 8: 168.0, 16: 159.1, 20: 155.2, 25: 151.2}
# The tables committed before their re-run after issue 15 (common.PREVIOUS_RUN): median PSNR (dB) of the
# swap and fusion rows, and SPEAR's median PSNR and exact batches (of 5) per batch size
PREVIOUS_GENG = {"restored": 25.1, "swapped": 9.6, "same": 13.2, "distinct": 26.9}
PREVIOUS_SPEAR = {4: (172.9, 5), 8: (168.3, 5), 16: (159.1, 5), 20: (156.5, 5), 25: (150.9, 3)}


def render_geng(db: Path, swap: dict[str, dict[str, Any]], elapsed: float) -> Path:
    rows = stored(db)
    lines = provenance(
        title="Geng et al.'s claims with geng's own label counts (attack-split MNIST)", name="geng",
        rows=rows, elapsed=elapsed,
        split="`attack` of mnist (the model is untrained; no image trained anything or chose a setting)",
        seeds="counts 0–9 per batch size; fusion and the swapped label 0–4 (seed = batch and convnet init)",
        preset="`default` (geng's counts are its own label step: no labels are handed over)",
        budget="counts: one image step (only the restored multiset is scored); fusion and swap: 300 "
               "signed-Adam steps per batch of 4 (300 evaluations of a 4-image trial gradient)",
        extra=["**model**: untrained ReLU `convnet`, FedSGD, random labels (duplicates allowed) unless stated",
               "the swapped-label runs come from `bench/tables/geng_swap.py` (cached in "
               "`runs/tables/geng_swap.json`), the others from `bench/tables/geng.toml`"])
    counts = [r for r in rows if r["preset"] == "counts"]
    methods = ["geng", "llg", "lsq"]
    body = []
    for b in sorted({r["batch_size"] for r in counts}):
        line = [str(b)]
        for m in methods:
            runs = [r for r in counts if r["batch_size"] == b and r["config"]["attack_options"]["labels"] == m]
            exact = sum(1 for r in runs if r["label_accuracy"] == 1.0)
            mean = sum(r["label_accuracy"] for r in runs) / max(len(runs), 1)
            line.append(f"{exact}/{len(runs)} exact, {mean:.3f}")
        body.append(line)
    lines += ["## Claim: zero-shot label counts work with duplicate labels", "",
              "Batches with random labels (duplicates allowed). Each cell: batches whose label multiset was "
              "restored exactly, and the mean share of labels right. `geng` is the paper's count formula "
              "(the attack's own step); `llg` is Wainakh et al. with the official (1 + 1/C) factor; `lsq` "
              "is gradleak's own refinement.", "",
              *table(["b", *methods], body)]
    restored = [v for k, v in sorted(swap.items()) if k.endswith(":restored")]
    swapped = [v for k, v in sorted(swap.items()) if k.endswith(":swapped")]
    exact = sum(1 for v in restored if v["restored_exact"])
    lines += ["## Claim: one wrong label and the restoration fails (b = 4)", "",
              *table(["labels", "median PSNR (dB)", "PSNR per seed 0–4"],
                     [[f"geng's restored labels (exact in {exact}/{len(restored)} batches)",
                       f"**{f1(median(v['psnr'] for v in restored))}**", ", ".join(f1(v["psnr"]) for v in restored)],
                      ["the same labels with the first one swapped",
                       f"**{f1(median(v['psnr'] for v in swapped))}**", ", ".join(f1(v["psnr"]) for v in swapped)]]),
              "Before issue 14 (docs/notes/issue-5.md, not in the README; batches from the whole pool, mean of 3): "
              "28.0 dB with the restored labels, 9.6 dB with one swapped.", ""]
    fusion = [r for r in rows if r["preset"] == "fusion"]
    body, fused = [], {}
    for mode, label in (("same", "one label for all four images"), ("distinct", "four distinct labels")):
        runs = sorted((r for r in fusion if r["config"]["label_mode"] == mode), key=lambda r: r["seed"])
        fused[mode] = median(r["psnr"] for r in runs)
        body.append([label, f"**{f1(fused[mode])}**",
                     f"{sum(1 for r in runs if r['label_accuracy'] == 1.0)}/{len(runs)}",
                     ", ".join(f1(r["psnr"]) for r in runs)])
    lines += ["## Claim: images that share a label come out fused (b = 4)", "",
              *table(["batch", "median PSNR (dB)", "labels exact", "PSNR per seed 0–4"], body),
              "Before issue 14 (docs/notes/issue-5.md, whole pool, mean of 3): 13.6 dB label-homogeneous, "
              "30.3 dB distinct.", ""]
    lines += against_previous([
        ("geng's restored labels", PREVIOUS_GENG["restored"], median(v["psnr"] for v in restored)),
        ("the same labels, first one swapped", PREVIOUS_GENG["swapped"], median(v["psnr"] for v in swapped)),
        ("fusion: one label for all four", PREVIOUS_GENG["same"], fused["same"]),
        ("fusion: four distinct", PREVIOUS_GENG["distinct"], fused["distinct"])])
    return write("geng", lines)


def render_spear(db: Path, elapsed: float) -> Path:
    rows = stored(db)
    lines = provenance(
        title="SPEAR: exact batch recovery against the batch size (attack-split MNIST)", name="spear_exact",
        rows=rows, elapsed=elapsed, split="`attack` of mnist", seeds="0–4 per batch size",
        preset="`default` (method `hybrid`)", budget="at most 120 s per batch (`max_seconds`)",
        extra=["**model**: untrained `mlp` of width 200, FedSGD, random labels; a batch is exact when "
               "every image is (exact rate 1)",
               "**code**: re-run in full after issue 15 with issue 19's SPEAR (a store resumed from older runs "
               "keeps their code); the previous run, with SPEAR before issue 19 (b = 4-20 at commit 51e7aa1, "
               "b = 25 at 9b866bc), is at the end"])
    body, worse, medians = [], [], {}
    for b in sorted({r["batch_size"] for r in rows}):
        runs = [r for r in rows if r["batch_size"] == b]
        exact = sum(1 for r in runs if r["exact_fraction"] == 1.0)
        psnr = medians[b] = median(r["psnr"] for r in runs)
        body.append([str(b), str(len(runs)), f"{exact} ({100 * exact // max(len(runs), 1)} %)", f1(psnr),
                     f"{median(r['seconds'] for r in runs):.2f}", f"{max(r['seconds'] for r in runs):.2f}",
                     f"{SPEAR_BEFORE[b]:.1f}" if b in SPEAR_BEFORE else ""])
        if b in SPEAR_BEFORE and psnr < SPEAR_BEFORE[b] - 0.05:
            worse.append(f"b={b}: {f1(psnr)} dB now vs {SPEAR_BEFORE[b]:.1f} dB before")
    lines += table(["b", "batches", "exact batches", "median PSNR (dB)", "median s", "max s",
                    "median PSNR before issue 14 (README, 20 whole-pool batches)"], body)
    if worse:
        lines += ["Lower median PSNR than before (every batch still counts as exact only if it is): "
                  + "; ".join(worse) + ". PSNR of an exact float64 reconstruction depends on the images.", ""]
    lines += ["Cut against the earlier README table: 5 batches per batch size here, 20 there (10 at b = 25); "
              "the full version is the same grid with `seed = [0, ..., 19]` in `bench/tables/spear_exact.toml`.", ""]
    lines += against_previous([(f"b={b}", PREVIOUS_SPEAR[b][0], psnr) for b, psnr in medians.items()
                               if b in PREVIOUS_SPEAR])
    exact_before = ", ".join(f"b={b}: {PREVIOUS_SPEAR[b][1]}" for b in sorted(PREVIOUS_SPEAR))
    lines += [f"Exact batches of 5 in the previous run: {exact_before}. Every batch here is exact or not by the "
              "same test; between exact runs the PSNR (over 150 dB) measures float64 round-off, not quality.", ""]
    return write("spear_exact", lines)
