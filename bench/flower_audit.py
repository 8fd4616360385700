"""Audit a real Flower run (3 simulated clients, FedAvg, MNIST MLP) and print the leak per round.

Each configuration is one Flower simulation with ``compare_plain`` on: plain FedAvg first, then
the same federation audited, so the table also shows how far the audited run's final model is
from the plain one (0 = the audit did not change training).

    python bench/flower_audit.py                      # spear, and ig with 100 steps
    python bench/flower_audit.py --attacks spear --rounds 3 --examples 8

Timings include Flower/Ray start-up and are inflated by whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", default="spear,ig")
    parser.add_argument("--ig-steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    from gradleak.integrations.flower.demo import DemoConfig, run_demo

    rows = []
    for attack in args.attacks.split(","):
        options = {"steps": args.ig_steps} if attack == "ig" else {"max_seconds": 60}
        cfg = DemoConfig(rounds=args.rounds, clients=args.clients, examples_per_client=args.examples,
                         attack=attack, attack_options=options, compare_plain=True, seed=args.seed)
        start = time.perf_counter()
        summary = run_demo(cfg)
        wall = time.perf_counter() - start
        for rnd in range(1, args.rounds + 1):
            recs = [r for r in summary["records"] if r["round"] == rnd]
            ok = [r for r in recs if r["status"] == "ok" and r["metrics"]]
            rows.append((attack, rnd, len(recs), len(ok),
                         statistics.mean(r["metrics"]["psnr"] for r in ok) if ok else float("nan"),
                         statistics.mean(r["metrics"]["exact_fraction"] for r in ok) if ok else float("nan"),
                         statistics.mean(r["seconds"] for r in ok) if ok else float("nan"),
                         summary["accuracy"].get(rnd, float("nan")), summary["max_abs_diff_vs_plain"], wall))
    print("| attack | round | updates | attacked | mean PSNR | mean exact | attack s | global acc "
          "| max abs diff vs plain | run wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for a, rnd, n, ok, psnr, exact, sec, acc, diff, wall in rows:
        print(f"| {a} | {rnd} | {n} | {ok} | {psnr:.1f} | {exact:.2f} | {sec:.1f} | {acc:.3f} | {diff:.2g} "
              f"| {wall:.0f} |")


if __name__ == "__main__":
    main()
