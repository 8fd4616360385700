"""``gradleak check`` on three models, pasted into docs/results/check.md (issue 17).

The three models of the issue: an MLP (SPEAR applies), a ConvNet with BatchNorm (the user
model of ``examples/user_model/model.py``) and DLG's sigmoid LeNet, each with a simulated
FedSGD update of embedded MNIST digits (untrained models, so the batch is drawn from the whole
dataset; seed 0). The output
is the command's own text at 100 columns, so the page shows exactly what a user sees.

Run: ``python bench/check_report.py`` (about a minute; writes docs/results/check.md).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    ("An MLP (one hidden ReLU layer of width 200), batch of 8: SPEAR applies",
     ["--model", "mlp", "--model-option", "widths=200", "--dataset", "mnist", "--batch-size", "8"]),
    ("A ConvNet with BatchNorm (the user model file of examples/user_model), batch of 4",
     ["--model", "examples/user_model/model.py:build", "--dataset", "mnist", "--batch-size", "4"]),
    ("DLG's sigmoid LeNet, batch of 1",
     ["--model", "lenet", "--dataset", "mnist", "--batch-size", "1"]),
]


def run(argv: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "gradleak.cli", "check", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return "\n".join(line.rstrip() for line in done.stdout.splitlines())


def main() -> None:
    import torch

    from gradleak.core.version import __version__

    parts = ["# `gradleak check` on three models", "",
             "Written by `python bench/check_report.py` (the command's own output at 100 columns). "
             "Untrained models, seed 0, a simulated FedSGD update of embedded MNIST digits whose labels "
             "do not leak (`--labels restore`, the default of `gradleak check`); nothing is attacked, "
             "so no split, preset or budget applies. "
             f"gradleak {__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
             f"{platform.machine()} ({os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}.", ""]
    for title, argv in CASES:
        parts += [f"## {title}", "", "```console", "$ gradleak check " + " ".join(argv), run(argv), "```", ""]
    out = ROOT / "docs" / "results" / "check.md"
    out.write_text("\n".join(parts))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
