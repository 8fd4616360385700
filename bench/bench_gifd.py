"""GIFD benchmark (issue 8): in distribution, out of distribution, domain shift, defenses.

Superseded for published numbers by ``bench/tables/gifd.toml`` (``make tables``: radii chosen on
validation, equal budgets, ``docs/results/gifd.md``). Every client image here comes from the
``attack`` split (faces: its attack split too), never from data a prior trained on.

Usage:
    python bench/bench_gifd.py --section indist   --images 10 --steps 200
    python bench/bench_gifd.py --section ood      --images 5  --steps 200
    python bench/bench_gifd.py --section faces    --images 5  --steps 200
    python bench/bench_gifd.py --section defenses --images 5  --steps 200
    python bench/bench_gifd.py --section ggl-table --images 5 --steps 100   # bench_ggl.py table3 protocol

CPU scale: ``--steps`` Adam steps per GIFD stage (the paper: 1000) and ``--restarts`` chains
(the paper: 4). Baselines get the same gradient-step budget: GGL-Adam and IG run
``stages × steps`` steps with the same restarts; GGL-CMA runs ``--cma-rounds`` × ``--cma-pop``.
Model: the ReLU ``convnet`` (untrained, seed = image index), b = 1, labels restored (iDLG).
Prints markdown tables of PSNR (median over images, and each image's value).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import gradleak as gl
from gradleak.attacks.gifd.attack import GIFD
from gradleak.core.types import GroundTruth, Reconstruction
from gradleak.experiment import Scenario, run_scenario
from gradleak.generative import load_generator


def psnr(x: torch.Tensor, truth: GroundTruth, labels: torch.Tensor) -> float:
    return float(gl.evaluate(Reconstruction(x, labels), truth)["psnr"])


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}"


def ggl_view(gen: gl.generative.Generator, labels: torch.Tensor, classes: torch.Tensor, num_classes: int):
    """The generator with its label table rewritten so GGL conditions task label → the given class."""
    view = copy.copy(gen)
    table = [(int(labels[0]) + 1) % num_classes] * gen.num_classes
    for lab, c in zip(labels.tolist(), classes.tolist()):
        table[c] = int(lab)
    view.class_labels = tuple(table)
    return view


def attack_all(args, ds, truth, model, gen, rows, maps=("auto",), num_classes=10, gen_name="") -> None:
    """Run gifd (per label-map mode), ggl-adam, ggl-cma and ig on one image; append PSNRs to rows."""
    update = gl.fedsgd_update(model, truth.inputs, truth.labels)
    steps, r = args.steps, args.restarts
    n_stages = gen.num_stages
    for mode in maps:
        t = time.perf_counter()
        radii = {"radii": args.radii} if args.radii else {}
        res = GIFD(generator=gen, steps=steps, restarts=r, label_map=mode, seed=args.seed, **radii).search(
            model, update, shape=ds.shape)
        secs = time.perf_counter() - t
        key = f"gifd[{mode}]" if len(maps) > 1 else "gifd"
        for k, x in res.stage_images.items():
            rows.setdefault(f"{key} stage {k}", []).append(psnr(x, truth, res.labels))
        rows.setdefault(key, []).append(psnr(res.stage_images[res.best_stage], truth, res.labels))
        rows.setdefault(f"{key} seconds", []).append(secs)
        rows.setdefault(f"{key} best stage", []).append(res.best_stage)
        rows.setdefault(f"{key} map", []).append(res.info["mapping"])
        mapped = res.classes
        if args.gifd_only:
            continue
        if mode != "none" or len(maps) == 1:
            ggl_gen = ggl_view(gen, res.labels, mapped, num_classes)
            suffix = f"[{mode}]" if len(maps) > 1 else ""
            for opt, kw in (("adam", {"steps": steps * n_stages, "restarts": r}),
                            ("cma", {"steps": args.cma_rounds, "population": args.cma_pop})):
                if opt == "cma" and args.no_cma:
                    continue
                t = time.perf_counter()
                rec = gl.create_attack("ggl", generator=ggl_gen, optimizer=opt, seed=args.seed, **kw).run(
                    model, update, shape=ds.shape)
                rows.setdefault(f"ggl-{opt}{suffix}", []).append(psnr(rec.inputs, truth, rec.labels))
                rows.setdefault(f"ggl-{opt}{suffix} seconds", []).append(time.perf_counter() - t)
        if mode == "none" and len(maps) > 1:
            ggl_gen = ggl_view(gen, res.labels, mapped, num_classes)
            rec = gl.create_attack("ggl", generator=ggl_gen, optimizer="adam", steps=steps * n_stages,
                                   restarts=r, seed=args.seed).run(model, update, shape=ds.shape)
            rows.setdefault("ggl-adam[none]", []).append(psnr(rec.inputs, truth, rec.labels))
    if args.gifd_only:
        return
    t = time.perf_counter()
    rec = gl.create_attack("ig", steps=steps * n_stages, restarts=r, seed=args.seed).run(model, update, shape=ds.shape)
    rows.setdefault("ig", []).append(psnr(rec.inputs, truth, rec.labels))
    rows.setdefault("ig seconds", []).append(time.perf_counter() - t)


def print_rows(title: str, rows: dict) -> None:
    print(f"\n## {title}")
    print("| method | median | per image |")
    print("|---|---|---|")
    for name, vals in rows.items():
        if name.endswith("map"):
            print(f"| {name} | | {vals} |")
        elif name.endswith("best stage"):
            print(f"| {name} | | {vals} |")
        else:
            print(f"| {name} | {med(vals)} | {', '.join(f'{v:.1f}' for v in vals)} |")


def pick(ds, labels: set[int], n: int, seed: int) -> list[int]:
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    return [i for i in order if int(ds.labels[i]) in labels][:n]


def indist(args) -> None:
    ds, gen, rows = gl.load_split("mnist", {}, "attack"), load_generator("mnist-dcgan"), {}
    for i in range(args.first, args.first + args.images):
        truth = gl.sample_batch(ds, 1, seed=i)
        model = gl.build_model("convnet", shape=ds.shape, num_classes=10, seed=i)
        attack_all(args, ds, truth, model, gen, rows)
        print(f"image {i} done: " + ", ".join(f"{k}={v[-1]}" for k, v in rows.items() if "stage" not in k),
              flush=True)
    last = args.first + args.images - 1
    print_rows(f"in distribution: mnist-dcgan on mnist, convnet, b=1, images {args.first}..{last}, "
               f"{args.steps} steps/stage, {args.restarts} restarts", rows)


def ood(args) -> None:
    ds, gen, rows = gl.load_split("mnist", {}, "attack"), load_generator("mnist04-dcgan"), {}
    for j, i in enumerate(pick(ds, {5, 6, 7, 8, 9}, args.images, args.seed)):
        truth = GroundTruth(ds.inputs[i:i + 1], ds.labels[i:i + 1])
        model = gl.build_model("convnet", shape=ds.shape, num_classes=10, seed=j)
        attack_all(args, ds, truth, model, gen, rows, maps=("none", "auto"))
        print(f"image {j} (label {int(truth.labels[0])}) done", flush=True)
    print_rows(f"out of distribution: mnist04-dcgan on digits 5-9, convnet, b=1, {args.images} images, "
               f"{args.steps} steps/stage", rows)


def faces(args) -> None:
    ds, gen, rows = gl.load_split("faces", {"size": 28}, "attack"), load_generator("mnist-dcgan"), {}
    for j, i in enumerate(pick(ds, {1}, args.images, args.seed)):
        truth = GroundTruth(ds.inputs[i:i + 1], ds.labels[i:i + 1])
        model = gl.build_model("convnet", shape=ds.shape, num_classes=2, seed=j)
        attack_all(args, ds, truth, model, gen, rows, maps=("none", "search"), num_classes=2)
        print(f"face {j} done", flush=True)
    print_rows(f"domain shift: mnist-dcgan prior on faces (28x28), convnet (2 classes), b=1, "
               f"{args.images} images, {args.steps} steps/stage", rows)


def defenses(args) -> None:
    specs = ("noise:sigma=0.1", "clip:norm=4", "prune:ratio=0.9", "soteria:ratio=0.8")
    print(f"\n## under defenses (adaptive attacker), mnist-dcgan on mnist, convnet, b=1, labels restored, "
          f"{args.images} images, {args.steps} steps/stage, {args.restarts} restarts")
    print("| attack | " + " | ".join(specs) + " |")
    print("|---|" + "---|" * len(specs))
    for attack, opts in (("gifd", {"steps": args.steps, "restarts": args.restarts}),):
        cells = []
        for spec in specs:
            vals = []
            for i in range(args.images):
                s = Scenario(attack=attack, dataset="mnist", model="convnet", labels="restore", seed=i,
                             defenses=(spec,), adaptive=True, attack_options=opts)
                vals.append(run_scenario(s).metrics["psnr"])
            cells.append(f"{med(vals)} ({', '.join(f'{v:.1f}' for v in vals)})")
            print(f"{attack} {spec}: {cells[-1]}", flush=True)
        print(f"| {attack} | " + " | ".join(cells) + " |")


def ggl_table(args) -> None:
    """The GGL issue's table-3 protocol (bench/bench_ggl.py): lenet (seed --seed), held-out digits,
    defense applied to the FedSGD gradient, adaptive transform, labels restored."""
    from gradleak.data.splits import load_splits
    from gradleak.defenses.adaptive import adaptive_transform

    settings = {"none": None, "noise": ("noise", {"sigma": 0.1}), "clip": ("clip", {"norm": 4.0}),
                "prune": ("prune", {"ratio": 0.9}), "soteria": ("soteria", {"ratio": 0.8})}
    test = load_splits("mnist", {}).attack
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[:args.images]
    model = gl.build_model("lenet", shape=(1, 28, 28), num_classes=10, seed=args.seed)
    cells = []
    for d in args.defenses:
        vals = []
        for i, idx in enumerate(order.tolist()):
            truth = GroundTruth(test.inputs[idx:idx + 1], test.labels[idx:idx + 1])
            update = gl.fedsgd_update(model, truth.inputs, truth.labels)
            if settings[d] is not None:
                name, opts = settings[d]
                opts = {**opts, "seed": 1000 + i} if name == "noise" else opts
                extra = {"inputs": truth.inputs} if name == "soteria" else {}
                update = gl.create_defense(name, **opts)(update, model=model, **extra)
            rec = GIFD(steps=args.steps, restarts=args.restarts, labels="restore", seed=i,
                       transform=adaptive_transform(model, update)).run(model, update, shape=(1, 28, 28))
            m = gl.evaluate(rec, truth)
            vals.append((m["mse"], m["psnr"], m["ssim"], rec.seconds))
            print(f"  {d} img {i} psnr {m['psnr']:.2f} label {rec.labels.tolist()}/{truth.labels.tolist()}",
                  flush=True)
        med = [statistics.median(v[k] for v in vals) for k in range(4)]
        cells.append(f"{med[0]:.4f} / {med[1]:.2f} / {med[2]:.3f} / {med[3]:.0f}")
    print(f"\n## GGL table-3 protocol (lenet, held-out digits, b=1, adaptive), gifd {args.steps} steps/stage, "
          f"{args.restarts} restarts, {args.images} images: median MSE / PSNR / SSIM / wall s")
    print("| attack | " + " | ".join(args.defenses) + " |")
    print("|---" * (len(args.defenses) + 1) + "|")
    print("| gifd | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", choices=("indist", "ood", "faces", "defenses", "ggl-table"), required=True)
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--first", type=int, default=0, help="indist: first image index (seed)")
    p.add_argument("--steps", type=int, default=200, help="GIFD Adam steps per stage")
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--cma-rounds", type=int, default=100)
    p.add_argument("--cma-pop", type=int, default=20)
    p.add_argument("--no-cma", action="store_true")
    p.add_argument("--radii", type=lambda v: tuple(float(x) for x in v.split(",")), default=None,
                   help="GIFD relative radii of stages 1, 2, ... (default: the attack's)")
    p.add_argument("--defenses", nargs="+", default=["none", "noise", "clip", "prune", "soteria"],
                   help="ggl-table: settings (columns)")
    p.add_argument("--gifd-only", action="store_true", help="skip the ggl and ig baselines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    {"indist": indist, "ood": ood, "faces": faces, "defenses": defenses, "ggl-table": ggl_table}[args.section](args)
    print(f"\n(total {time.perf_counter() - start:.0f} s wall, 2 shared CPU cores under heavy contention)")


if __name__ == "__main__":
    main()
