"""What the CLI shows a person: rich tables and a progress bar on stderr.

Example:
    >>> with progress_bar("demo", disable=True) as bar:
    ...     bar(1, 2, 0.5)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich and torch are imported by the functions that draw, not by the parser
    from gradleak.core.types import Progress as ProgressFn


@contextmanager
def progress_bar(label: str, *, disable: bool = False) -> Iterator[ProgressFn]:
    """A ``progress(step, total, loss)`` callback drawing a rich bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if disable or not sys.stderr.isatty() and not console.is_terminal:
        yield lambda step, total, loss: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3e}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=None, loss=float("nan"))

        def update(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=loss)

        yield update


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_summary(summary: dict[str, Any]) -> None:
    """The results table of one run."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['attack']} · {summary['dataset']} · {summary['model']} · "
                        f"b={summary['batch_size']} · {summary['protocol']} · seed {summary['seed']}")
    for key in ("psnr", "ssim", "mse", "lpips", "label_accuracy", "exact_fraction"):
        table.add_column(key, justify="right")
    table.add_column("seconds", justify="right")
    m = summary["metrics"]
    table.add_row(*[_fmt(m[k]) for k in ("psnr", "ssim", "mse", "lpips", "label_accuracy",
                                         "exact_fraction")], _fmt(summary["seconds"]))
    console = Console()
    console.print(table)
    state = summary.get("model_state")
    if state:
        console.print(f"model: {state['state']}, test accuracy {state['test_accuracy']:.3f} "
                      f"(chance {state['chance']:.3f}){', from cache' if state.get('cached') else ''}")
    if summary.get("out_dir"):
        console.print(f"run folder: {summary['out_dir']}")


def print_list(listing: dict[str, dict[str, str]]) -> None:
    """Registered names with their one-line descriptions."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for kind, entries in listing.items():
        table = Table(title=kind)
        table.add_column("name")
        table.add_column("description")
        for name, doc in entries.items():
            table.add_row(name, doc)
        console.print(table)
