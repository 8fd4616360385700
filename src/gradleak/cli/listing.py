"""``gradleak list`` and ``gradleak datasets``: what is registered, and every dataset's shape and source.

Example:
    $ gradleak list attacks
    $ gradleak datasets --json
"""

from __future__ import annotations

import argparse
import json

from gradleak.cli.output import print_list


def cmd_list(args: argparse.Namespace) -> int:
    """``gradleak list``: what is registered (``--verbose``: each attack's options, presets, requirements)."""
    from gradleak.core.doctext import first_line
    from gradleak.core.registry import ATTACKS, DATASETS, DEFENSES, LABEL_METHODS, MODELS

    if getattr(args, "verbose", False) and args.kind in ("attacks", "all"):
        return _list_attacks_verbose(args, ATTACKS.names())
    tables = {"attacks": ATTACKS, "defenses": DEFENSES, "datasets": DATASETS, "models": MODELS,
              "labels": LABEL_METHODS}
    chosen = tables if args.kind == "all" else {args.kind: tables[args.kind]}
    listing = {k: {n: first_line(reg.get(n).__doc__) for n in reg.names()} for k, reg in chosen.items()}
    if args.json:
        print(json.dumps(listing))
    else:
        print_list(listing)
    return 0


def _list_attacks_verbose(args: argparse.Namespace, names: list[str]) -> int:
    if args.json:
        from gradleak.attacks.describe import describe_attack
        from gradleak.core.jsonable import to_jsonable

        print(json.dumps({n: to_jsonable(describe_attack(n)) for n in names}, default=repr))
        return 0
    from gradleak.cli.attack_help import format_attack

    print(("\n\n" + "─" * 40 + "\n\n").join(format_attack(n) for n in names))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    """``gradleak datasets``: shape, classes, size and source of every registered dataset."""
    from rich.console import Console

    from gradleak.cli.tables import show_table
    from gradleak.data.catalog import describe_datasets

    rows = describe_datasets(args.data_dir)
    if args.json:
        print(json.dumps(rows))
        return 0
    cells = [[r["name"], "×".join(map(str, r["shape"])) if isinstance(r["shape"], list) else str(r["shape"]),
              str(r["classes"]), str(r["size"]), r["source"]] for r in rows]
    show_table("datasets", ["name", "shape", "classes", "size", "source"], cells, console=Console())
    return 0
