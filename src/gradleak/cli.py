"""The ``gradleak`` command line.

Example:
    $ gradleak attack ig --dataset mnist --model convnet --batch-size 4 --steps 1000 --seed 0 --json
    $ gradleak list
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from gradleak.cli_output import print_list, print_summary, progress_bar
from gradleak.cli_sweep import add_parsers as add_sweep_parsers
from gradleak.cli_sweep import cmd_report, cmd_sweep
from gradleak.errors import ConfigError, GradleakError
from gradleak.generative.cli_prior import add_parsers as add_prior_parsers
from gradleak.generative.cli_prior import cmd_prior
from gradleak.integrations.cli_flower import add_parsers as add_flower_parsers
from gradleak.integrations.cli_flower import cmd_flower_demo


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage on one line and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"gradleak: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, Any]:
    """``["k=v", ...]`` → typed dict (ints, floats, booleans, comma lists of numbers, strings)."""
    from gradleak.defenses.base import _value

    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, val = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"{what} {pair!r} is not KEY=VALUE")
        parts = val.split(",")
        out[key] = tuple(_value(p) for p in parts) if len(parts) > 1 else _value(val)
    return out


def _add_attack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("attack", help="attack name (see 'gradleak list attacks')")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default=None, help="folder of a user-owned dataset")
    p.add_argument("--model", default="convnet")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor option, e.g. width=32 (repeatable)")
    p.add_argument("--norm", default=None, help="bn | gn | none: normalisation layers of resnet18/resnet20")
    p.add_argument("--model-state", default="untrained", metavar="untrained|trained:EPOCHS",
                   help="train the model on the training split first (cached); attack a held-out batch")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="load weights (.safetensors, or torch.save state dict read with weights_only)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--label-mode", default="random", help="random | distinct | same")
    p.add_argument("--protocol", default="fedsgd", help="fedsgd | fedavg")
    p.add_argument("--local-lr", type=float, default=0.1)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--local-batch-size", type=int, default=None)
    p.add_argument("--local-steps", type=int, default=None)
    p.add_argument("--labels", default="known", help="known | restore | a label method")
    p.add_argument("--mode", "--bn", dest="mode", default="eval",
                   help="train | eval: BatchNorm/dropout mode of the client's pass (--bn is the same)")
    p.add_argument("--share-bn-stats", action="store_true",
                   help="the client also sends its BatchNorm running statistics to the server")
    p.add_argument("--defense", action="append", default=[], metavar="NAME:k=v,...",
                   help="defense applied by the client, in order (repeatable)")
    p.add_argument("--adaptive", action="store_true",
                   help="the attacker copies the defenses' deterministic part onto its trial gradients")
    p.add_argument("--label-map", default=None, metavar="auto|search|none|FILE",
                   help="generative attacks (gifd): map task labels to generator classes (FILE: JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="attack iterations")
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="attack hyper-parameter (repeatable), e.g. -p tv=0.01")
    p.add_argument("--out", default=None, help="run folder (default runs/ATTACK-DATASET-MODEL-bB-sSEED)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files of an existing --out")
    p.add_argument("--save-tensors", action="store_true", help="also write tensors.safetensors")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--update", default=None, metavar="FILE",
                   help="attack a saved update (safetensors keyed by parameter name) instead of simulating one")
    p.add_argument("--update-kind", default=None, help="gradients | weight_delta (overrides the file)")
    p.add_argument("--num-examples", type=int, default=None, help="examples behind --update")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = _Parser(prog="gradleak", description="Measure data leakage from FL client updates.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_attack_args(sub.add_parser("attack", help="run one attack scenario end to end"))
    lst = sub.add_parser("list", help="registered attacks, defenses, datasets, models")
    lst.add_argument("kind", nargs="?", default="all",
                     choices=["all", "attacks", "defenses", "datasets", "models", "labels"])
    lst.add_argument("--json", action="store_true")
    dsp = sub.add_parser("datasets", help="every dataset: shape, classes, size and where it comes from")
    dsp.add_argument("--data-dir", default=None, help="also load the user-owned datasets from this folder")
    dsp.add_argument("--json", action="store_true")
    add_sweep_parsers(sub)
    add_prior_parsers(sub)
    add_flower_parsers(sub)
    return parser


def scenario_from_args(args: argparse.Namespace) -> Any:
    """Build a :class:`~gradleak.experiment.Scenario` from parsed ``attack`` arguments."""
    from gradleak.experiment import Scenario

    attack_options = parse_pairs(args.param, "attack parameter")
    for key in ("steps", "restarts", "label_map"):
        if getattr(args, key, None) is not None:
            attack_options[key] = getattr(args, key)
    dataset_options = {"data_dir": args.data_dir} if args.data_dir else {}
    model_options = parse_pairs(args.model_option, "model option")
    if args.norm is not None:
        model_options["norm"] = args.norm
    return Scenario(
        attack=args.attack, dataset=args.dataset, model=args.model, batch_size=args.batch_size,
        label_mode=args.label_mode, protocol=args.protocol, local_lr=args.local_lr,
        local_epochs=args.local_epochs, local_batch_size=args.local_batch_size,
        local_steps=args.local_steps, labels=args.labels, mode=args.mode, seed=args.seed,
        defenses=tuple(args.defense), attack_options=attack_options,
        model_options=model_options, dataset_options=dataset_options,
        model_state=args.model_state, checkpoint=args.checkpoint, share_buffers=args.share_bn_stats,
        adaptive=args.adaptive,
    )


def cmd_attack(args: argparse.Namespace) -> int:
    """``gradleak attack``: run one scenario, print a table (or JSON), write the run folder."""
    from gradleak.experiment import run_scenario

    scenario = scenario_from_args(args)
    if args.update:
        return _attack_saved_update(args, scenario)
    out = args.out or f"runs/{args.attack}-{args.dataset}-{args.model}-b{args.batch_size}-s{args.seed}"
    with progress_bar(f"{args.attack} on {args.dataset}/{args.model}", disable=args.no_progress) as bar:
        summary = run_scenario(scenario, Path(out), overwrite=args.overwrite, progress=bar,
                               save_tensor_file=args.save_tensors)
    if args.json:
        from gradleak.runfolder import _jsonable

        print(json.dumps(_jsonable(summary)))
    else:
        print_summary(summary)
    return 0


def _attack_saved_update(args: argparse.Namespace, scenario: Any) -> int:
    """Attack an update from a file: no ground truth, so only the reconstruction is written."""
    from gradleak.experiment import attack_update_file

    out = args.out or f"runs/{args.attack}-update-s{args.seed}"
    with progress_bar(f"{args.attack} on {args.update}", disable=args.no_progress) as bar:
        summary = attack_update_file(scenario, args.update, out, kind=args.update_kind,
                                     num_examples=args.num_examples, overwrite=args.overwrite,
                                     progress=bar)
    print(json.dumps(summary) if args.json else f"reconstruction written to {summary['out_dir']}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``gradleak list``: what is registered."""
    from gradleak.registry import ATTACKS, DATASETS, DEFENSES, LABEL_METHODS, MODELS

    tables = {"attacks": ATTACKS, "defenses": DEFENSES, "datasets": DATASETS, "models": MODELS,
              "labels": LABEL_METHODS}
    chosen = tables if args.kind == "all" else {args.kind: tables[args.kind]}
    listing = {k: {n: _first_line(reg.get(n).__doc__) for n in reg.names()} for k, reg in chosen.items()}
    if args.json:
        print(json.dumps(listing))
    else:
        print_list(listing)
    return 0


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def cmd_datasets(args: argparse.Namespace) -> int:
    """``gradleak datasets``: shape, classes, size and source of every registered dataset."""
    from rich.console import Console
    from rich.table import Table

    from gradleak.data.catalog import describe_datasets

    rows = describe_datasets(args.data_dir)
    if args.json:
        print(json.dumps(rows))
        return 0
    table = Table(title="datasets")
    for col in ("name", "shape", "classes", "size", "source"):
        table.add_column(col)
    for r in rows:
        shape = "×".join(map(str, r["shape"])) if isinstance(r["shape"], list) else str(r["shape"])
        table.add_row(r["name"], shape, str(r["classes"]), str(r["size"]), r["source"])
    Console().print(table)
    return 0


COMMANDS = {"attack": cmd_attack, "list": cmd_list, "datasets": cmd_datasets, "sweep": cmd_sweep,
            "report": cmd_report, "prior": cmd_prior, "flower-demo": cmd_flower_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors print one line and return 2, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except GradleakError as err:
        sys.stderr.write(f"gradleak: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("gradleak: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
