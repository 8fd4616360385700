"""The ``gradleak flower-demo`` command: a real Flower run, audited round by round.

Example:
    $ gradleak flower-demo --attack spear --rounds 3 --clients 3 --out runs/flower-demo
    $ gradleak flower-demo --attack ig --steps 200 --defense noise:sigma=0.01 --json
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parsers(sub: Any) -> None:
    """Add ``flower-demo`` to the CLI's sub-commands."""
    p = sub.add_parser("flower-demo", help="train MNIST with Flower (FedAvg, simulated clients) and "
                       "audit every client update (needs gradleak[flower])")
    p.add_argument("--attack", default="ig", help="the server's attack (spear suits the mlp)")
    p.add_argument("--steps", type=int, default=None, help="attack iterations (optimisation attacks)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="attack hyper-parameter (repeatable)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--examples-per-client", type=int, default=8)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="mlp")
    p.add_argument("--local-lr", type=float, default=0.1)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--local-batch-size", type=int, default=0, help="0 = the whole local data (one step)")
    p.add_argument("--local-optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    p.add_argument("--local-momentum", type=float, default=0.0)
    p.add_argument("--local-weight-decay", type=float, default=0.0)
    p.add_argument("--proximal-mu", type=float, default=0.0, help="FedProx's proximal term")
    p.add_argument("--defense", action="append", default=[], metavar="NAME:k=v,...",
                   help="defense the clients apply through a Flower mod (repeatable)")
    p.add_argument("--wait", action="store_true",
                   help="training waits for each round's attacks (at most --round-seconds); default: never")
    p.add_argument("--pool", default="thread", choices=["thread", "process"],
                   help="where attacks run; 'process' terminates an attack over budget")
    p.add_argument("--workers", type=int, default=1, help="attacks running at once")
    p.add_argument("--attack-seconds", type=float, default=60.0, help="budget per attack (0: none)")
    p.add_argument("--round-seconds", type=float, default=0.0, help="budget per round (0: none)")
    p.add_argument("--no-audit", action="store_true", help="plain FedAvg, for comparison")
    p.add_argument("--compare-plain", action="store_true",
                   help="also train plain FedAvg first and report the final models' difference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/flower-demo", help="audit folder (run folders, index, report)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def cmd_flower_demo(args: argparse.Namespace) -> int:
    """Run the demo; print the audit table (or JSON); write the report under ``--out``."""
    from gradleak.core.jsonable import to_jsonable
    from gradleak.core.options import parse_pairs
    from gradleak.integrations.flower.demo import DemoConfig, run_demo

    options = parse_pairs(args.param, "attack parameter")
    if args.steps is not None:
        options["steps"] = args.steps
    cfg = DemoConfig(rounds=args.rounds, clients=args.clients, examples_per_client=args.examples_per_client,
                     dataset=args.dataset, model=args.model, local_lr=args.local_lr,
                     local_epochs=args.local_epochs, local_batch_size=args.local_batch_size,
                     local_optimizer=args.local_optimizer, local_momentum=args.local_momentum,
                     local_weight_decay=args.local_weight_decay, proximal_mu=args.proximal_mu,
                     attack=args.attack, attack_options=options, audit=not args.no_audit, wait=args.wait,
                     pool=args.pool, workers=args.workers, attack_seconds=args.attack_seconds,
                     round_seconds=args.round_seconds, defenses=tuple(args.defense),
                     compare_plain=args.compare_plain, seed=args.seed)
    summary = run_demo(cfg, args.out, overwrite=args.overwrite)
    summary.pop("final")
    summary.pop("final_plain", None)
    if args.json:
        print(json.dumps(to_jsonable(summary)))
        return 0
    from rich.console import Console

    from gradleak.cli.tables import show_table

    title = (f"gradleak audit of a Flower run ({args.attack}); accuracy by round: "
             + ", ".join(f"{k}: {v:.2f}" for k, v in sorted(summary["accuracy"].items())))
    records = sorted(summary["records"], key=lambda r: (r["round"], r.get("partition_id") or 0, r["node_id"]))
    rows = [[str(r["round"]), _client(r), r["status"], str(r["num_examples"]),
             _num((r["metrics"] or {}).get("psnr")), _num((r["metrics"] or {}).get("ssim"), 3),
             _num((r["metrics"] or {}).get("exact_fraction")), _num(r["seconds"], 1), r["reason"] or ""]
            for r in records]
    console = Console()
    show_table(title, ["round", "client", "status", "examples", "PSNR", "SSIM", "exact", "seconds", "note"], rows,
               console=console, right=["PSNR", "SSIM", "exact", "seconds"])
    if summary.get("max_abs_diff_vs_plain") is not None:
        console.print(f"max |audited - plain FedAvg| over the final weights: {summary['max_abs_diff_vs_plain']:.3g}")
    if summary.get("report"):
        console.print(f"report: {summary['report']}")
    return 0


def _num(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _client(row: dict[str, Any]) -> str:
    return f"partition {row['partition_id']}" if row.get("partition_id") is not None else f"node {row['node_id']}"
