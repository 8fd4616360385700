"""How exactly the attacker's unrolled simulation reproduces a client's FedAvg delta, for each
local optimiser a client may run (issue 18); writes docs/results/local_optimisers.md.

For each optimiser in the test table (``tests/attacks/test_local_optimisers.py``): an MLP on
8×8 digits (seed 0), a client batch of 4, two local epochs of batch size 2; the client runs
``torch.optim`` (:func:`gradleak.fl.fedavg_update`, seed 7), the attacker replays the same
mini-batches with :func:`gradleak.attacks.fedavg_unrolled.simulate_delta`. The column
"plain-SGD simulation" is what an attacker that ignores the optimiser would get: the error that
modelling the optimiser removes.

Run: ``python bench/bench_local_optimisers.py`` (seconds; deterministic, no timing).
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "attacks"))

from test_local_optimisers import OPTIMISERS, SHAPE, clients_batches  # noqa: E402

import gradleak  # noqa: E402
from gradleak.attacks.fedavg_unrolled import simulate_delta  # noqa: E402
from gradleak.core.types import LocalTraining  # noqa: E402
from gradleak.data import load_dataset  # noqa: E402
from gradleak.fl import fedavg_update  # noqa: E402
from gradleak.models import build_model  # noqa: E402


def relative_error(sim: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> float:
    """Largest per-tensor ``max|sim - truth| / max|truth|``.

    >>> t = {"w": torch.tensor([2.0, -4.0])}
    >>> relative_error({"w": torch.tensor([2.0, -3.0])}, t)
    0.25
    """
    return max(((sim[k] - t).abs().max() / t.abs().max()).item() for k, t in truth.items())


def rows() -> list[tuple[str, float, float, float]]:
    """One row per optimiser: (name, f64 error, f32 error, plain-SGD simulation error)."""
    digits = load_dataset("digits")
    out = []
    for name, local in OPTIMISERS.items():
        errs = []
        for dtype in (torch.float64, torch.float32):
            model = build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=(32,)).eval().to(dtype)
            x, y = digits.inputs[:4].to(dtype), digits.labels[:4]
            update = fedavg_update(model, x, y, local, seed=7)
            sim = simulate_delta(model, x, y, local, clients_batches(4, local, 7))
            errs.append(relative_error(sim, update.tensors))
        plain = LocalTraining(lr=local.lr, epochs=local.epochs, batch_size=local.batch_size)
        sim = simulate_delta(model, x, y, plain, clients_batches(4, plain, 7))
        out.append((name, errs[0], errs[1], relative_error(sim, update.tensors)))
    return out


def main() -> None:
    """Write the table."""
    table = rows()
    lines = [
        "# Local optimisers: the attacker's simulation vs the client's delta",
        "",
        "Written by `python bench/bench_local_optimisers.py` (deterministic). MLP (32 hidden, seed 0)",
        "on 4 digits images (8×8), 2 local epochs of batch size 2, client seed 7.",
        f"gradleak {gradleak.__version__}, torch {torch.__version__}, Python {platform.python_version()}.",
        "",
        "| client optimiser | max rel. error, matching simulation (float64) | (float32) "
        "| max rel. error, plain-SGD simulation (float32) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {a:.1e} | {b:.1e} | {c:.2f} |" for n, a, b, c in table]
    path = ROOT / "docs" / "results" / "local_optimisers.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
