"""``gradleak check``: which attacks and label methods apply to a model and an update, and why not.

Example:
    $ gradleak check --model my_model.py:build --checkpoint weights.safetensors --update update.safetensors \\
        --dataset mnist
    $ gradleak check --model mlp --model-option widths=200 --dataset mnist --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any

from gradleak.core.options import parse_pairs


def add_check_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``gradleak check``: a model, and a saved update or a simulated client."""
    p.add_argument("--model", default="convnet", metavar="NAME|FILE.py:FACTORY|MODULE:FACTORY",
                   help="a registered model or your own factory (as in 'gradleak attack')")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--norm", default=None, help="bn | gn | none (resnet18/resnet20)")
    p.add_argument("--checkpoint", default=None, metavar="FILE", help="the weights the client trained from")
    p.add_argument("--model-state", default="untrained", metavar="untrained|trained:EPOCHS")
    p.add_argument("--update", default=None, metavar="FILE", help="a saved update (else one is simulated)")
    p.add_argument("--update-kind", default=None, help="gradients | weight_delta (overrides the file)")
    p.add_argument("--num-examples", type=int, default=None, help="examples behind --update")
    p.add_argument("--dataset", default="mnist", help="input shape and classes (and the simulated client's data)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=1, help="the simulated client's batch size")
    p.add_argument("--label-mode", default="random", help="random | distinct | same (simulated batch)")
    p.add_argument("--protocol", default="fedsgd", help="fedsgd | fedavg (simulated update)")
    p.add_argument("--local-lr", type=float, default=0.1)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--local-batch-size", type=int, default=None)
    p.add_argument("--local-steps", type=int, default=None)
    p.add_argument("--labels", default="restore", choices=["known", "restore"],
                   help="known: the labels leak with the (simulated) update | restore: they do not (default)")
    p.add_argument("--mode", "--bn", dest="mode", default="eval", help="train | eval: the client's BatchNorm mode")
    p.add_argument("--defense", action="append", default=[], metavar="NAME:k=v,...",
                   help="defense the simulated client applies (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _inputs(args: argparse.Namespace) -> tuple[Any, Any, Any, list[int] | None]:
    """The model, the update, the input shape, and the true labels when the update is simulated."""
    from gradleak.experiment.scenario import Scenario

    model_options = parse_pairs(args.model_option, "model option")
    if args.norm is not None:
        model_options["norm"] = args.norm
    dataset_options = {"data_dir": args.data_dir} if args.data_dir else {}
    labels = "known" if args.labels == "known" else "restore"
    scenario = Scenario(attack="ig", dataset=args.dataset, model=args.model, batch_size=args.batch_size,
                        label_mode=args.label_mode, protocol=args.protocol, local_lr=args.local_lr,
                        local_epochs=args.local_epochs, local_batch_size=args.local_batch_size,
                        local_steps=args.local_steps, labels=labels, mode=args.mode, seed=args.seed,
                        defenses=tuple(args.defense), model_options=model_options,
                        dataset_options=dataset_options, model_state=args.model_state, checkpoint=args.checkpoint)
    scenario.validate()
    if args.update:
        from gradleak.experiment.model_state import prepare_model
        from gradleak.experiment.update_io import load_update

        local = scenario.local_training() if (args.update_kind or "") == "weight_delta" else None
        update = load_update(args.update, kind=args.update_kind, num_examples=args.num_examples,
                             local_training=local)
        model, dataset, _ = prepare_model(args.model, model_options, args.dataset, dataset_options, seed=args.seed,
                                          model_state=args.model_state, checkpoint=args.checkpoint)
        model.train(args.mode == "train")
        update.validate(model)  # a file that does not fit, or holds NaN or only zeros, is refused here
        return model, update, dataset.shape, None
    from gradleak.experiment.run import simulate_client

    side = simulate_client(scenario)
    d = side.defended
    return d.model, d.update, side.dataset.shape, d.truth.labels.tolist()


def cmd_check(args: argparse.Namespace) -> int:
    """Print (or emit as JSON) every attack's and label method's applicability."""
    from gradleak.experiment.applicability import applicability

    model, update, shape, truth_labels = _inputs(args)
    report = applicability(model, update, shape=shape)
    report["model"]["name"] = args.model
    report["model"]["checkpoint"] = args.checkpoint
    report["model"]["true_labels"] = sorted(truth_labels) if truth_labels is not None else None
    report["model"]["source"] = args.update or f"simulated: {args.dataset}, batch {args.batch_size}, {args.protocol}"
    if args.json:
        print(json.dumps(report))
    else:
        print_check(report)
    return 0


def _problems(row: dict[str, Any]) -> str:
    return "; ".join(p["message"] for p in row["problems"])


def print_check(report: dict[str, Any], console: Any = None) -> None:
    """The report as tables and wrapped text."""
    from rich.console import Console

    from gradleak.cli.tables import show_table

    console = console or Console()
    width = min(console.width, 120)
    f = report["model"]
    console.print(f"model {f['name']}{' + ' + f['checkpoint'] if f.get('checkpoint') else ''}: "
                  f"{f['parameters']:,} parameters; first weighted layer {f['first_weighted_layer']}; "
                  f"activations {', '.join(f['activations']) or 'none found'}; "
                  f"BatchNorm {'yes' if f['batchnorm'] else 'no'} ({f['mode']} mode); last linear {f['last_linear']}",
                  highlight=False, soft_wrap=False)
    console.print(f"update: {f['update']} of {f['num_examples']} example(s) ({f['source']}); labels "
                  f"{'in the update' if f['labels_in_update'] else 'not in the update'}"
                  f"{'; defenses ' + ', '.join(f['defenses']) if f['defenses'] else ''}"
                  f"{'; true labels ' + str(f['true_labels']) if f.get('true_labels') is not None else ''}",
                  highlight=False)
    rows = []
    for a in report["attacks"]:
        note = _problems(a) if not a["applies"] else (
            f"labels by {a['labels']['method']}: {a['labels']['labels']}" if a.get("labels") else "")
        rows.append([a["name"], "yes" if a["applies"] else "no", note])
    show_table("attacks", ["attack", "applies", "why not / what it will use"], rows, console=console)
    rows = [[m["name"], "yes" if m["applies"] else "no",
             str(m["labels"]) if m["applies"] else "; ".join(m["reasons"])] for m in report["label_methods"]]
    show_table("label methods (--labels NAME)", ["method", "applies", "restored labels (sorted) / why not"], rows,
               console=console)
    console.print("what each attack assumes (gradleak attack NAME --help: its options and presets):", style="bold")
    for a in report["attacks"]:
        text = f"{a['name']}: {a['requires'] or a['summary']}"
        console.print(textwrap.fill(text, width=width, subsequent_indent="    "), highlight=False, markup=False)
    console.print("what each label method does and assumes:", style="bold")
    for m in report["label_methods"]:
        text = f"{m['name']}: {m['summary']} {m.get('requires') or ''}".strip()
        console.print(textwrap.fill(text, width=width, subsequent_indent="    "), highlight=False, markup=False)
