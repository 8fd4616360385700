"""Foundation benchmark: attack speed against the double-backward floor, and attack quality.

Usage:
    python bench/bench_attacks.py                 # speed table (ig/convnet, dlg/lenet, b=1 and 4)
    python bench/bench_attacks.py --quality       # + the issue's PSNR medians and iDLG label hits
    python bench/bench_attacks.py --threads 1     # torch threads (default: torch's own)

Prints tables; every number in the README's foundation section comes from here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import gradleak as gl
import gradleak.experiment
from gradleak.experiment import Scenario, run_scenario
from gradleak.labels.idlg import restore_idlg


def floor_rate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seconds: float = 3.0) -> float:
    """Double backwards per second: gradient with create_graph, an L2 distance, backward to x."""
    params = list(model.parameters())
    target = [torch.randn_like(p) for p in params]
    x = x.clone().requires_grad_(True)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 5:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        sum(((g - t) ** 2).sum() for g, t in zip(grads, target)).backward()
        x.grad = None
        n += 1
    return n / (time.perf_counter() - start)


def setup(model_name: str, b: int, seed: int = 0):
    ds = gl.load_dataset("mnist")
    truth = gl.sample_batch(ds, b, seed=seed)
    model = gl.build_model(model_name, shape=ds.shape, num_classes=10, seed=seed)
    update = gl.fedsgd_update(model, truth.inputs, truth.labels, labels_leak=True)
    return ds, truth, model, update


def speed_table() -> None:
    print("\n## attack step rate vs the double-backward floor (MNIST 28x28)")
    print("| attack | model | b | attack it/s | floor it/s | attack/floor time | PSNR |")
    print("|---|---|---|---|---|---|---|")
    for attack, model_name, steps in (("ig", "convnet", 200), ("dlg", "lenet", 20)):
        for b in (1, 4):
            ds, truth, model, update = setup(model_name, b)
            floor = floor_rate(model, truth.inputs, truth.labels)
            gl.create_attack(attack, steps=2).run(model, update, shape=ds.shape)  # warm-up: lazy imports
            rec = gl.create_attack(attack, steps=steps).run(model, update, shape=ds.shape)
            evals = rec.info.get("evaluations", steps)
            rate = evals / rec.seconds
            psnr = gl.evaluate(rec, truth)["psnr"]
            print(f"| {attack} | {model_name} | {b} | {rate:.1f} | {floor:.1f} | {floor / rate:.2f}x "
                  f"| {psnr:.1f} |")
    print("\n## batched restarts (ig, convnet, b=1, 100 steps)")
    print("| restarts R | seconds | seconds / (R x one restart) |")
    print("|---|---|---|")
    ds, truth, model, update = setup("convnet", 1)
    gl.create_attack("ig", steps=2, restarts=2).run(model, update, shape=ds.shape)  # warm-up
    base = None
    for r in (1, 4, 8):
        rec = gl.create_attack("ig", steps=100, restarts=r).run(model, update, shape=ds.shape)
        base = base or rec.seconds
        print(f"| {r} | {rec.seconds:.2f} | {rec.seconds / (r * base):.2f} |")


def quality_table() -> None:
    print("\n## quality (median over seeds; MNIST)")
    print("| attack | model | b | steps | seeds | median PSNR | PSNRs | label acc | seconds (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = (("dlg", "lenet", 1, 300, "restore"), ("idlg", "lenet", 1, 300, "restore"),
            ("ig", "convnet", 1, 1000, "known"), ("ig", "convnet", 4, 1000, "known"))
    for attack, model_name, b, steps, labels in runs:
        psnrs, secs, accs = [], [], []
        for seed in range(5):
            s = Scenario(attack=attack, dataset="mnist", model=model_name, batch_size=b,
                                       seed=seed, labels=labels, attack_options={"steps": steps})
            result = run_scenario(s)
            psnrs.append(result.metrics["psnr"])
            secs.append(result.seconds)
            accs.append(result.metrics["label_accuracy"])
        print(f"| {attack} | {model_name} | {b} | {steps} | 5 | {statistics.median(psnrs):.2f} | "
              f"{', '.join(f'{p:.1f}' for p in psnrs)} | {statistics.mean(accs):.2f} | "
              f"{statistics.median(secs):.1f} |")
    print("\n## iDLG label restoration, 20 seeds, b=1")
    for model_name in ("lenet", "convnet"):
        hits = 0
        for seed in range(20):
            _, truth, model, update = setup(model_name, 1, seed)
            hits += int(restore_idlg(model, update, shape=truth.inputs.shape[1:]).item() == truth.labels.item())
        print(f"- {model_name}: {hits}/20 labels exact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    speed_table()
    if args.quality:
        quality_table()


if __name__ == "__main__":
    main()
