"""GGL (Li et al., CVPR 2022) analogues on MNIST / LeNet, batch 1, attack-split digits.

Superseded for published numbers by ``bench/tables/ggl_table3.toml`` (``make tables``: equal
budgets, written to ``docs/results/ggl_table3.md``); kept for exploring other budgets.

* ``table3``: dlg, idlg, ig, ggl under noise σ=0.1, clip S=4, prune 90 %, Soteria 80 %; median
  MSE / PSNR / SSIM (pixel space [0, 1], peak 1) over ``--images`` held-out test digits, and
  median seconds per attack. ig and ggl get the adaptive attacker's trial transform
  (``attacks/common/adaptive.py``); dlg/idlg get it too where they take one.
* ``table2``: ggl with adam vs bo vs cma, no defense.

The prior (``mnist-dcgan``) was trained on the ``train`` split; the client's digits come from the
``attack`` split (``gradleak.data.splits``), so the prior has never seen them.

    python bench/bench_ggl.py table3 --images 10
    python bench/bench_ggl.py table2 --images 5
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

import torch

from gradleak.core.registry import ATTACKS, DEFENSES, create_defense
from gradleak.core.types import GroundTruth
from gradleak.data.splits import load_splits
from gradleak.defenses.adaptive import adaptive_transform
from gradleak.fl import fedsgd_update
from gradleak.metrics import evaluate
from gradleak.models import build_model

SETTINGS = {"none": None, "noise": ("noise", {"sigma": 0.1}), "clip": ("clip", {"norm": 4.0}),
            "prune": ("prune", {"ratio": 0.9}), "soteria": ("soteria", {"ratio": 0.8})}


def attack_options(name: str, args: argparse.Namespace) -> dict:
    if name in ("dlg", "idlg"):
        return {"steps": args.lbfgs_steps, "labels": "restore"} if name == "idlg" else {"steps": args.lbfgs_steps}
    if name == "ig":
        return {"steps": args.ig_steps, "restarts": args.restarts, "labels": "restore"}
    opt = name.split("-")[1] if "-" in name else "cma"
    steps = {"cma": args.rounds, "bo": args.bo_evals, "adam": args.adam_steps}[opt]
    return {"optimizer": opt, "steps": steps, "population": args.population, "labels": "restore",
            "bo_init": min(256, args.bo_evals // 4), "restarts": 1 if opt != "adam" else args.restarts}


def run(attacks: list[str], defenses: list[str], args: argparse.Namespace) -> dict:
    test = load_splits("mnist", {}).attack
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[:args.first + args.images]
    model = build_model(args.model, shape=(1, 28, 28), num_classes=10, seed=args.seed)
    results: dict = {}
    for d in defenses:
        for i, idx in enumerate(order.tolist()):
            if i < args.first:
                continue
            truth = GroundTruth(test.inputs[idx:idx + 1], test.labels[idx:idx + 1])
            update = fedsgd_update(model, truth.inputs, truth.labels)
            if SETTINGS[d] is not None:
                name, opts = SETTINGS[d]
                if "seed" in inspect.signature(DEFENSES.get(name)).parameters:
                    opts = {**opts, "seed": 1000 + i}
                extra = {"inputs": truth.inputs} if name == "soteria" else {}
                update = create_defense(name, **opts)(update, model=model, **extra)
            transform = adaptive_transform(model, update)
            for a in attacks:
                factory = ATTACKS.get(a.split("-")[0])
                opts = attack_options(a, args)
                if "seed" in inspect.signature(factory).parameters:
                    opts["seed"] = i
                if transform is not None and "transform" in inspect.signature(factory).parameters:
                    opts["transform"] = transform
                start, cpu = time.perf_counter(), time.process_time()
                rec = factory(**opts).run(model, update, shape=(1, 28, 28))
                secs, cpu = time.perf_counter() - start, time.process_time() - cpu
                m = evaluate(rec, truth)
                results.setdefault((a, d), []).append((m["mse"], m["psnr"], m["ssim"], secs, cpu))
                print(f"  {d:8s} img {i} {a:9s} psnr {m['psnr']:6.2f} ssim {m['ssim']:.3f} "
                      f"label {rec.labels.tolist()}/{truth.labels.tolist()} "
                      f"{secs:6.1f}s wall {cpu:6.1f}s cpu", flush=True)
    return results


def table(results: dict, attacks: list[str], defenses: list[str], title: str) -> None:
    print(f"\n{title}: median over images of MSE / PSNR (dB) / SSIM / wall s / CPU s per attack")
    print("| attack | " + " | ".join(defenses) + " |")
    print("|---" * (len(defenses) + 1) + "|")
    for a in attacks:
        cells = []
        for d in defenses:
            rows = results.get((a, d), [])
            med = [statistics.median(r[k] for r in rows) for k in range(5)]
            cells.append(f"{med[0]:.4f} / {med[1]:.2f} / {med[2]:.3f} / {med[3]:.0f} / {med[4]:.0f}")
        print(f"| {a} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("which", choices=["table3", "table2"])
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--first", type=int, default=0, help="skip the first images (to split a run)")
    p.add_argument("--model", default="lenet")
    p.add_argument("--attacks", nargs="+", default=None)
    p.add_argument("--defenses", nargs="+", default=None)
    p.add_argument("--rounds", type=int, default=800, help="CMA-ES rounds")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--bo-evals", type=int, default=1000)
    p.add_argument("--adam-steps", type=int, default=2500)
    p.add_argument("--ig-steps", type=int, default=1000)
    p.add_argument("--lbfgs-steps", type=int, default=300)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.which == "table3":
        attacks = args.attacks or ["dlg", "idlg", "ig", "ggl"]
        defenses = args.defenses or ["noise", "clip", "prune", "soteria"]
    else:
        attacks = args.attacks or ["ggl-adam", "ggl-bo", "ggl-cma"]
        defenses = args.defenses or ["none"]
    print(f"settings: {vars(args)}", flush=True)
    results = run(attacks, defenses, args)
    table(results, attacks, defenses, f"GGL {args.which} analogue, mnist/{args.model}, b=1")


if __name__ == "__main__":
    main()
