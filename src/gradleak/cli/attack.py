"""``gradleak attack``: one scenario end to end, or a saved update.

Example:
    $ gradleak attack ig --dataset mnist --model convnet --batch-size 4 --steps 1000 --seed 0 --json
    $ gradleak attack ig --update grads.safetensors --model convnet --dataset mnist --labels restore
    $ gradleak attack ig --model my_model.py:build --checkpoint weights.safetensors \\
        --update update.safetensors --dataset mnist --labels restore
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

from gradleak.cli.attack_help import AttackHelp
from gradleak.core.device import DEVICE_HELP
from gradleak.core.errors import ConfigError
from gradleak.core.options import parse_pairs


def add_attack_args(p: argparse.ArgumentParser) -> None:
    """The arguments of ``gradleak attack`` (the parser is made with ``add_help=False``)."""
    p.add_argument("-h", "--help", action=AttackHelp,
                   help="show this help; 'gradleak attack NAME --help' adds NAME's options, presets and requirements")
    p.add_argument("attack", help="attack name (see 'gradleak list attacks --verbose')")
    p.add_argument("--dataset", default="mnist", help="the client's data (with --update: its shape and classes)")
    p.add_argument("--data-dir", default=None, help="folder of a user-owned dataset")
    p.add_argument("--model", default="convnet", metavar="NAME|FILE.py:FACTORY|MODULE:FACTORY",
                   help="a registered model, or your own: a function returning an nn.Module (it may take "
                        "shape, num_classes, seed and --model-option values; it gets pixels in [0, 1])")
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
    p.add_argument("--labels", default="own",
                   help="own (default: the attack's own label step; labels do not leak) | known (labels leak "
                        "to the server: an upper-bound assumption) | restore | a label method")
    p.add_argument("--mode", "--bn", dest="mode", default="eval",
                   help="train | eval: BatchNorm/dropout mode of the client's pass (--bn is the same)")
    p.add_argument("--share-bn-stats", action="store_true",
                   help="the client also sends its BatchNorm running statistics to the server")
    p.add_argument("--defense", action="append", default=[], metavar="NAME:k=v,...",
                   help="defense applied by the client, in order (repeatable)")
    p.add_argument("--adaptive", nargs="?", const=True, default=False, metavar="observed-mask",
                   help="the attacker copies the defenses' deterministic part onto its trial gradients "
                        "(as the papers); '--adaptive observed-mask': the stronger variant for prune/topk")
    p.add_argument("--preset", default="default", metavar="NAME",
                   help="the attack's hyper-parameter preset: default | paper | tiny (-p and --steps override it)")
    p.add_argument("--split", default="attack", help="attack (default) | validation: where the scored batch "
                                                     "comes from (validation only to choose hyper-parameters)")
    p.add_argument("--label-map", default=None, metavar="auto|search|none|FILE",
                   help="generative attacks (gifd): map task labels to generator classes (FILE: JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--steps", type=int, default=None, help="attack iterations")
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="attack hyper-parameter (repeatable), e.g. -p tv=0.01")
    p.add_argument("--out", default=None, help="run folder (default runs/ATTACK-DATASET-MODEL-bB-sSEED)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files of an existing --out")
    p.add_argument("--save-tensors", action="store_true", help="also write tensors.safetensors")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument("--lpips", action="store_true",
                   help="also score LPIPS (needs the lpips package and its weights on disk; otherwise left out)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--update", default=None, metavar="FILE",
                   help="attack a saved update (safetensors keyed by parameter name) instead of simulating one")
    p.add_argument("--update-kind", default=None, help="gradients | weight_delta (overrides the file)")
    p.add_argument("--num-examples", type=int, default=None, help="examples behind --update")


def scenario_from_args(args: argparse.Namespace) -> Any:
    """Build a :class:`~gradleak.experiment.Scenario` from parsed ``attack`` arguments."""
    from gradleak.experiment.scenario import Scenario

    attack_options = parse_pairs(args.param, "attack parameter")
    for key in ("steps", "restarts", "label_map"):
        if getattr(args, key, None) is not None:
            _set_once(attack_options, key, getattr(args, key), f"--{key.replace('_', '-')}", "-p")
    dataset_options = {"data_dir": args.data_dir} if args.data_dir else {}
    model_options = parse_pairs(args.model_option, "model option")
    if args.norm is not None:
        _set_once(model_options, "norm", args.norm, "--norm", "--model-option")
    return Scenario(
        attack=args.attack, dataset=args.dataset, model=args.model, batch_size=args.batch_size,
        label_mode=args.label_mode, protocol=args.protocol, local_lr=args.local_lr,
        local_epochs=args.local_epochs, local_batch_size=args.local_batch_size,
        local_steps=args.local_steps, labels=args.labels, mode=args.mode, seed=args.seed,
        defenses=tuple(args.defense), attack_options=attack_options,
        model_options=model_options, dataset_options=dataset_options,
        model_state=args.model_state, checkpoint=args.checkpoint, share_buffers=args.share_bn_stats,
        adaptive=args.adaptive, split=args.split, attack_preset=args.preset,
    )


def _set_once(options: dict[str, Any], key: str, value: Any, flag: str, pairs: str) -> None:
    if key in options:
        raise ConfigError(f"{key} is set twice: {flag} {value} and {pairs} {key}={options[key]}; keep one")
    options[key] = value


def model_label(model: str) -> str:
    """A short name for a model spec: ``examples/net.py:build`` → ``net-build``."""
    where, colon, name = model.rpartition(":")
    return f"{Path(where).stem}-{name}" if colon else model


def _bars(args: argparse.Namespace, label: str) -> Any:
    from gradleak.cli.output import run_progress
    from gradleak.core.registry import ATTACKS

    cls = ATTACKS.get(args.attack)
    hint = "--steps N shortens it" if "steps" in inspect.signature(cls).parameters else ""
    return run_progress(label, unit=getattr(cls, "progress_unit", "steps"),
                        bound=getattr(cls, "progress_total_is_bound", False), disable=args.no_progress, hint=hint)


def cmd_attack(args: argparse.Namespace) -> int:
    """``gradleak attack``: run one scenario, print a table (or JSON), write the run folder."""
    from gradleak.cli.output import print_fit_warning, print_summary
    from gradleak.core.device import resolve_device
    from gradleak.core.jsonable import to_jsonable
    from gradleak.experiment.run import run_scenario

    device = resolve_device(args.device)  # a GPU this machine lacks: one line, exit 2, before any work
    scenario = scenario_from_args(args)
    if args.update:
        return _attack_saved_update(args, scenario, device)
    model = model_label(args.model)
    out = args.out or f"runs/{args.attack}-{args.dataset}-{model}-b{args.batch_size}-s{args.seed}"
    with _bars(args, f"{args.attack} on {args.dataset}/{model}") as bars:
        result = run_scenario(scenario, Path(out), overwrite=args.overwrite, progress=bars.attack,
                              save_tensor_file=args.save_tensors, lpips=args.lpips,
                              training_progress=bars.training, device=device)
    if args.json:
        print(json.dumps(to_jsonable(result.summary())))
        print_fit_warning(result.fit)
    else:
        print_summary(result.summary())
    return 0


def _attack_saved_update(args: argparse.Namespace, scenario: Any, device: Any) -> int:
    """Attack an update from a file: no ground truth, so the reconstruction and its fit are written."""
    from gradleak.cli.output import print_fit_warning, print_update_summary
    from gradleak.core.jsonable import to_jsonable
    from gradleak.experiment.update_file import attack_update_file, saved_update_summary

    out = args.out or f"runs/{args.attack}-update-s{args.seed}"
    with _bars(args, f"{args.attack} on {args.update}") as bars:
        result = attack_update_file(scenario, args.update, out, kind=args.update_kind,
                                    num_examples=args.num_examples, overwrite=args.overwrite,
                                    progress=bars.attack, device=device)
    summary = saved_update_summary(result)
    if args.json:
        print(json.dumps(to_jsonable(summary)))
        print_fit_warning(result.fit)
    else:
        print_update_summary(summary)
    return 0
