"""``gradleak list`` and ``gradleak datasets``: what is registered, and every dataset's shape and source.

Example:
    $ gradleak list attacks
    $ gradleak datasets --json
"""

from __future__ import annotations

import argparse
import json


def cmd_list(args: argparse.Namespace) -> int:
    """``gradleak list``: what is registered."""
    from gradleak.core.descriptions import DESCRIPTIONS
    from gradleak.core.registry import ATTACKS, DATASETS, DEFENSES, LABEL_METHODS, MODELS

    tables = {"attacks": ATTACKS, "defenses": DEFENSES, "datasets": DATASETS, "models": MODELS,
              "labels": LABEL_METHODS}
    chosen = tables if args.kind == "all" else {args.kind: tables[args.kind]}
    # built-ins from the description table (no module imported); a user's own entry from its docstring
    listing = {k: {n: DESCRIPTIONS[k][n] if n in DESCRIPTIONS[k] else _first_line(reg.get(n).__doc__)
                   for n in reg.names()} for k, reg in chosen.items()}
    if args.json:
        print(json.dumps(listing))
    else:
        from gradleak.cli.output import print_list

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
