"""Issue 3 measurements: ig on natural32 (convnet, resnet20 with BN in eval mode), trained:1 models.

Usage:
    python bench/bench_natural.py ig        [--steps 2000] [--seeds 5]    # convnet, b=1
    python bench/bench_natural.py resnet    [--steps 500]  [--seeds 3] [--tv 0.03]  # resnet20, --bn eval
    python bench/bench_natural.py trained   [--model convnet]             # trained:1 accuracy + cache
    python bench/bench_natural.py sweep     [--steps 2000] [--seeds 3] [--configs tv=1e-1,lr=0.03]

Run folders go to ``runs/bench-natural/``. One thread (the machine is shared), so seconds are
inflated by whatever else runs at the same time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from gradleak.experiment import Scenario, run_scenario
from gradleak.experiment.model_state import prepare_model

OUT = Path("runs/bench-natural")
SWEEP: dict[str, dict[str, object]] = {
    "defaults": {}, "tv=1e-3": {"tv": 1e-3}, "tv=3e-2": {"tv": 3e-2}, "tv=1e-1": {"tv": 1e-1},
    "lr=0.03": {"lr": 0.03}, "restarts=4": {"restarts": 4}, "tv=3e-2+restarts=4": {"tv": 3e-2, "restarts": 4},
}


def _runs(model: str, steps: int, seeds: int, label: str, model_state: str = "untrained",
          **attack_options: object) -> dict[str, float]:
    psnrs, secs = [], []
    for seed in range(seeds):
        s = Scenario(attack="ig", dataset="natural32", model=model, batch_size=1, seed=seed,
                     mode="eval", model_state=model_state,
                     attack_options={"steps": steps, **attack_options})
        out = OUT / f"{label}-s{seed}"
        result = run_scenario(s, out, overwrite=True)
        psnrs.append(result.metrics["psnr"])
        secs.append(result.seconds)
        print(f"  {label} seed {seed}: psnr {psnrs[-1]:.2f} dB, ssim {result.metrics['ssim']:.3f}, "
              f"{secs[-1]:.0f} s -> {out}/reconstruction.png", flush=True)
    return {"median_psnr": statistics.median(psnrs), "min": min(psnrs), "max": max(psnrs),
            "median_s": statistics.median(secs)}


def _table(rows: list[tuple[str, dict[str, float]]]) -> None:
    print("| setting | median PSNR | min | max | median s |\n|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['median_psnr']:.2f} | {r['min']:.2f} | {r['max']:.2f} | {r['median_s']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["ig", "resnet", "trained", "sweep"])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--state", default="untrained")
    parser.add_argument("--tv", type=float, default=None, help="ig's tv weight for the resnet part")
    parser.add_argument("--configs", default=",".join(SWEEP), help=f"sweep settings among {', '.join(SWEEP)}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part == "ig":
        steps, seeds = args.steps or 2000, args.seeds or 5
        print(f"ig · natural32 · {args.model} ({args.state}) · b=1 · {steps} steps · {seeds} seeds")
        label = f"ig-{args.model}-{args.state.replace(':', '')}"
        _table([(f"ig defaults, {args.model}", _runs(args.model, steps, seeds, label, model_state=args.state))])
    elif args.part == "resnet":
        steps, seeds = args.steps or 500, args.seeds or 3
        print(f"ig · natural32 · resnet20 (BN, eval mode, {args.state}) · b=1 · {steps} steps · "
              f"{seeds} seeds")
        opts = {} if args.tv is None else {"tv": args.tv}
        suffix = ("" if args.tv is None else f"-tv{args.tv:g}") + ("" if steps == 500 else f"-{steps}")
        _table([(f"ig {'defaults' if args.tv is None else f'tv={args.tv:g}'}, resnet20 bn eval",
                 _runs("resnet20", steps, seeds, f"ig-resnet20-{args.state.replace(':', '')}{suffix}",
                       model_state=args.state, **opts))])
    elif args.part == "trained":
        print(f"trained:1 · natural32 · {args.model}")
        print("| call | seconds | cached | test accuracy | chance | train size | test size |")
        print("|---|---|---|---|---|---|---|")
        for call in (1, 2):
            t = time.perf_counter()
            _, _, info = prepare_model(args.model, {}, "natural32", {}, seed=0, model_state="trained:1")
            assert info is not None
            print(f"| {call} | {time.perf_counter() - t:.1f} | {info['cached']} "
                  f"| {info['test_accuracy']:.3f} | {info['chance']:.3f} | {info['train_size']} "
                  f"| {info['test_size']} |", flush=True)
    else:
        steps, seeds = args.steps or 2000, args.seeds or 3
        print(f"ig hyper-parameters · natural32 · {args.model} · b=1 · {steps} steps · {seeds} seeds")
        rows = []
        for name in args.configs.split(","):
            opts = SWEEP[name]
            label = "sweep-" + name.replace("=", "").replace("+", "-")
            rows.append((name, _runs(args.model, steps, seeds, label, **opts)))
        _table(rows)


if __name__ == "__main__":
    main()
