"""The fit (how well a reconstruction explains the update) with the client's weights and with the
wrong ones, and how often the poor-fit warning fires (issue 17); writes docs/results/fit.md.

For each case and seed: an untrained model (seed s) computes the client's FedSGD gradient of an
MNIST batch drawn with seed s; the attack then runs once with the *client's* weights and once
with *another initialisation* (seed s + 100) — the situation of a server that attacks a saved
update without ``--checkpoint``. The fit is :func:`gradleak.experiment.fit.fit_report`; a run
is flagged when it is poor (cosine distance above ``POOR_COSINE``, or for SPEAR a first-layer
residual above ``POOR_RESIDUAL``).

The thresholds were set before this run from seeds 100 and 101 (IG on convnet, b = 1 and 4,
1000 steps; iDLG on LeNet, 100 steps; SPEAR on an MLP, b = 8): client's weights gave cosine
distances ≤ 0.011, other weights ≥ 0.26. The seeds reported here (0, 1, 2 by default) were not
used to choose them.

Run: ``python bench/bench_fit.py [--seeds 0 1 2] [--ig-steps 300] [--idlg-steps 50]``
(one thread; a few minutes on a quiet 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from gradleak.core.registry import create_attack
from gradleak.core.types import Reconstruction
from gradleak.data import load_dataset, sample_batch
from gradleak.experiment.fit import POOR_COSINE, POOR_RESIDUAL, fit_report
from gradleak.fl import fedsgd_update
from gradleak.metrics import evaluate
from gradleak.models import build_model

EARLIER = {  # PSNR per seed 0, 1, 2 of the run this table replaces (commit 8bd13b5: before issues 15 and 19)
    ("ig", 1, False): "37.7, 53.5, 39.2", ("ig", 1, True): "4.7, 5.4, 5.7",
    ("ig", 4, False): "37.7, 20.9, 26.2", ("ig", 4, True): "4.7, 5.2, 5.3",
    ("idlg", 1, False): "87.7, 94.1, 96.5", ("idlg", 1, True): "3.1, 3.4, 3.3",
    ("spear", 8, False): "169.7, 167.8, 169.3", ("spear", 8, True): "169.7, 31.3, 169.3",
}
"""Shown beside this run's numbers when the seeds are the default 0, 1, 2."""


def cases(args: argparse.Namespace) -> list[tuple[str, str, dict, int, dict]]:
    return [
        ("ig", "convnet", {}, 1, {"steps": args.ig_steps}),
        ("ig", "convnet", {}, 4, {"steps": args.ig_steps}),
        ("idlg", "lenet", {}, 1, {"steps": args.idlg_steps}),
        ("spear", "mlp", {"widths": 200}, 8, {"labels": "none", "max_seconds": 30.0}),
    ]


def one(attack: str, model_name: str, options: dict, b: int, attack_options: dict, seed: int,
        wrong: bool, ds) -> dict:
    truth = sample_batch(ds, b, seed=seed)
    client = build_model(model_name, shape=ds.shape, num_classes=10, seed=seed, **options)
    server = build_model(model_name, shape=ds.shape, num_classes=10, seed=seed + 100, **options) if wrong else client
    update = fedsgd_update(client, truth.inputs, truth.labels)
    a = create_attack(attack, seed=seed, **attack_options)
    rec = a.run(server, update, shape=ds.shape)
    fit = fit_report(server, update, rec, exact=a.exact)
    scored = evaluate(Reconstruction(rec.inputs, rec.labels), truth)
    return {"cos": fit["cosine_distance"], "residual": fit["residual"], "poor": fit["poor"],
            "psnr": scored["psnr"], "exact": scored["exact_fraction"] == 1.0, "seconds": rec.seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--ig-steps", type=int, default=300)
    p.add_argument("--idlg-steps", type=int, default=50)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "results" / "fit.md"))
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset("mnist")
    rows, spear_wrong = [], []
    earlier = args.seeds == [0, 1, 2]
    start = time.perf_counter()
    for attack, model_name, options, b, attack_options in cases(args):
        for wrong in (False, True):
            runs = [one(attack, model_name, options, b, attack_options, s, wrong, ds) for s in args.seeds]
            measure = "residual" if attack == "spear" else "cos"
            values = [r[measure] for r in runs]
            budget = ", ".join(f"{k}={v}" for k, v in attack_options.items())
            fits = ", ".join(f"{v:.3g}" for v in values)
            psnrs = ", ".join(f"{r['psnr']:.1f}" for r in runs)
            rows.append(f"| {attack} | {model_name} | {b} | {budget} | {'another init' if wrong else 'the client’s'} | "
                        f"{'residual' if measure == 'residual' else 'cosine'} {fits} | "
                        f"{sum(r['poor'] for r in runs)}/{len(runs)} | {psnrs} |"
                        + (f" {EARLIER.get((attack, b, wrong), '')} |" if earlier else ""))
            if attack == "spear" and wrong:
                spear_wrong = runs
            print(rows[-1], flush=True)
    import gradleak

    text = [
        "# The fit and the poor-fit warning", "",
        "Written by `python bench/bench_fit.py " + " ".join(
            [f"--seeds {' '.join(map(str, args.seeds))}", f"--ig-steps {args.ig_steps}",
             f"--idlg-steps {args.idlg_steps}"]) + "`.",
        f"MNIST (embedded, whole dataset: untrained models), FedSGD, labels not leaked (iDLG restores its "
        f"one label; IG uses `labels=auto`, i.e. restored), seeds {', '.join(map(str, args.seeds))}; "
        f"one torch thread; gradleak {gradleak.__version__}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {os.cpu_count()} cores (shared with other jobs), "
        f"{time.strftime('%Y-%m-%d')}; {time.perf_counter() - start:.0f} s in all.", "",
        f"*poor* = cosine distance > {POOR_COSINE} (SPEAR: first-layer residual > {POOR_RESIDUAL}); the "
        "thresholds were fixed beforehand on seeds 100 and 101, which are not in this table. "
        "*another init* = the server attacks with a model initialised from seed s + 100 instead of the "
        "client's weights (a saved update attacked without `--checkpoint`).", "",
        "| attack | model | b | budget | server's weights | fit per seed | flagged poor | PSNR per seed (dB) |"
        + (" earlier run's PSNR (8bd13b5) |" if earlier else ""),
        "|---|---|--:|---|---|---|--:|--:|" + ("--:|" if earlier else ""), *rows, "",
        *spear_paragraph(spear_wrong, earlier)]
    Path(args.out).write_text("\n".join(text))
    print(f"wrote {args.out}")


def spear_paragraph(wrong: list[dict], earlier: bool) -> list[str]:
    """What SPEAR did with another initialisation in this run (and in the earlier one): batches recovered
    exactly (every image, by the metrics' exact-recovery test) and failures the fit did not flag."""
    recovered = sum(r["exact"] for r in wrong)
    unflagged = sum(1 for r in wrong if not r["exact"] and not r["poor"])
    text = ("SPEAR reads the inputs from the first layer's gradient, whose row space does not depend on the "
            "weights; the weights steer its ReLU-pattern filter and its checks. With another initialisation "
            f"it recovered {recovered} of {len(wrong)} batches exactly in this run (a recovered batch has a "
            "residual near zero, which the fit rightly accepts)"
            + ("; every other run is flagged poor by its residual." if not unflagged else
               f"; {unflagged} run(s) it did not recover were not flagged."))
    if earlier:
        text += (" The earlier run (8bd13b5, SPEAR before issue 19) recovered 2 of 3 with another "
                 "initialisation: issue 19's SPEAR does worse when the server's weights are wrong, and the "
                 "fit flags it.")
    return [text, ""]


if __name__ == "__main__":
    main()
