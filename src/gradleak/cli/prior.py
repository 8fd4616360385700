"""``gradleak prior``: train a generator prior, list the shipped ones.

Example:
    $ gradleak prior train --dataset mnist --classes 0-4 --epochs 50 --seed 0 --threads 1 \\
        --out mnist04-dcgan.safetensors
    $ gradleak prior list
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gradleak.core.device import DEVICE_HELP


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``prior train`` and ``prior list`` to the CLI's sub-parsers."""
    prior = sub.add_parser("prior", help="generator priors for generative attacks (ggl)")
    psub = prior.add_subparsers(dest="prior_command", required=True, parser_class=type(prior))
    tr = psub.add_parser("train", help="train a class-conditional DCGAN on an embedded dataset")
    tr.add_argument("--dataset", default="mnist", help="registered 1×28×28 dataset (mnist)")
    tr.add_argument("--split", default="train", help="train (hold out the test split) | all")
    tr.add_argument("--classes", default=None, help="labels to train on, e.g. 0-9, 0-4 or 1,3,5")
    tr.add_argument("--epochs", type=int, default=25)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--width", type=int, default=32)
    tr.add_argument("--ema", type=float, default=0.0, help="weight moving-average decay, e.g. 0.999 (0: off)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads (the shipped weights: 1)")
    tr.add_argument("--device", default="auto", help=DEVICE_HELP)
    tr.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    tr.add_argument("--samples-dir", default=None, help="sample grids as it trains (default OUT_samples/)")
    tr.add_argument("--sample-every", type=int, default=5, help="epochs between sample grids")
    tr.add_argument("--no-progress", action="store_true")
    psub.add_parser("list", help="the shipped generator priors")


def cmd_prior(args: argparse.Namespace) -> int:
    """Run ``gradleak prior train`` or ``gradleak prior list``."""
    from rich.console import Console

    if args.prior_command == "list":
        from gradleak.generative.hub import load_generator, shipped_generators

        for name in shipped_generators():
            g = load_generator(name)
            Console().print(f"{name}: latent {g.latent_dim}, classes {list(g.class_labels)}, "
                            f"images {'×'.join(map(str, g.image_shape))}, {g.num_stages} stages")
        return 0
    import torch

    from gradleak.cli.output import progress_bar
    from gradleak.core.device import resolve_device
    from gradleak.experiment.outputs import check_output_file, check_path
    from gradleak.generative.train import parse_classes, train_prior

    device = resolve_device(args.device)
    out = check_output_file(args.out, overwrite=args.overwrite, what="prior weights file")  # before training
    if args.samples_dir:
        check_path(args.samples_dir, "samples folder")
    if args.threads is not None and not 1 <= args.threads <= 4096:
        from gradleak.core.errors import ConfigError

        raise ConfigError(f"--threads must be between 1 and 4096, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = Path(args.samples_dir) if args.samples_dir else out.with_name(out.stem + "_samples")
    with progress_bar(f"prior {args.dataset} {args.classes or 'all'}", disable=args.no_progress) as bar:
        train_prior(args.dataset, split=args.split, classes=parse_classes(args.classes) if args.classes else None,
                    epochs=args.epochs, batch_size=args.batch_size, width=args.width, seed=args.seed, ema=args.ema,
                    out=out, samples_dir=samples, sample_every=args.sample_every, progress=bar, device=device)
    Console().print(f"wrote {out} and sample grids in {samples}/")
    return 0
