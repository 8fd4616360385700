"""What the CLI shows a person: progress bars on stderr, run-time estimates and result tables.

A bar says what it counts (``1000/1000 Adam steps``) and, when the run ends, finishes at what
was really done: an attack that stops early (a loss floor, SPEAR once its batch is verified)
ends at ``65536/65536 sampled row subsets``, not at ``65536/50000000``. An attack whose total is
only a cap (``progress_total_is_bound``) shows no ETA. Training before an attack has a bar of
its own. Once a run has timed a few real steps, a run expected to take longer than
:data:`LONG_RUN` seconds prints its expected duration before it goes on.

Example:
    >>> with run_progress("demo", disable=True) as bars:
    ...     bars.attack(1, 2, 0.5)
    >>> estimate = RunTimeEstimate()
    >>> [estimate.observe(s, 100, now=t) for s, t in [(1, 0.0), (2, 4.0), (3, 5.0), (4, 6.0), (5, 7.0)]]
    [None, None, None, None, 95.0]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gradleak.cli.tables import show_table

if TYPE_CHECKING:  # the CLI imports torch only when a command needs it
    from gradleak.core.types import Progress as ProgressFn

LONG_RUN = 60.0
"""Runs expected to take longer than this many seconds print their expected duration."""


class RunTimeEstimate:
    """Expected remaining seconds from the steps timed so far (``None`` until there is enough).

    The first steps of a run are often slower than the rest (lazy initialisation, tracing), so
    the rate is taken over the later half of the steps seen, once ``min_steps`` steps and
    ``min_seconds`` have passed (or any step after ``enough_seconds``).
    """

    def __init__(self, *, min_seconds: float = 5.0, min_steps: int = 4, enough_seconds: float = 20.0) -> None:
        self.seen: list[tuple[int, float]] = []
        self.min_seconds, self.min_steps, self.enough_seconds = min_seconds, min_steps, enough_seconds

    def observe(self, step: int, total: int, *, now: float | None = None) -> float | None:
        """Record that ``step`` of ``total`` finished; return the expected seconds left, once known."""
        now = time.perf_counter() if now is None else now
        self.seen.append((step, now))
        (s0, t0), (s1, t1) = self.seen[0], self.seen[-1]
        if s1 - s0 < 1 or not ((s1 - s0 >= self.min_steps and t1 - t0 >= self.min_seconds)
                               or t1 - t0 >= self.enough_seconds):
            return None
        sm, tm = self.seen[len(self.seen) // 2]
        if s1 - sm < 1:
            sm, tm = s0, t0
        return (t1 - tm) / (s1 - sm) * max(total - step, 0)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class RunBars:
    """The callbacks of one run: ``attack(step, total, loss)`` and ``training(batch, total, loss)``."""

    def __init__(self, progress: Progress | None, console: Console, label: str, *, unit: str = "steps",
                 bound: bool = False, hint: str = "") -> None:
        self.progress, self.console, self.label = progress, console, label
        self.unit, self.bound, self.hint = unit, bound, hint
        self.tasks: dict[str, TaskID] = {}
        self.last: dict[str, tuple[int, int]] = {}
        self.estimate, self.warned = RunTimeEstimate(), False
        self.started = time.perf_counter()

    def _update(self, kind: str, description: str, unit: str, step: int, total: int, loss: float) -> None:
        self.last[kind] = (step, total)
        if self.progress is None:
            return
        if kind not in self.tasks:
            self.tasks[kind] = self.progress.add_task(description, total=None if self.bound and kind == "attack"
                                                      else total, unit=unit, loss=loss)
        shown_total = None if self.bound and kind == "attack" else total
        self.progress.update(self.tasks[kind], completed=step, total=shown_total, loss=loss)

    def attack(self, step: int, total: int, loss: float) -> None:
        """The attack's progress callback."""
        self._update("attack", self.label, self.unit, step, total, loss)
        if self.bound or self.warned:
            return
        left = self.estimate.observe(step, total)
        if left is not None:
            self.warned = True
            expected = time.perf_counter() - self.started + left
            if expected > LONG_RUN:
                self.note(f"{self.label}: expected run time about {_duration(expected)} on this machine "
                          f"({total} {self.unit}, timed over the first {step}); Ctrl-C stops it"
                          + (f", {self.hint}" if self.hint else ""))

    def training(self, step: int, total: int, loss: float) -> None:
        """The progress callback of training before the attack."""
        self._update("training", "training the model", "mini-batches", step, total, loss)

    def note(self, text: str) -> None:
        """Print a line on stderr above the bars."""
        (self.progress.console if self.progress is not None else self.console).print(text, highlight=False)

    def finish(self) -> None:
        """Set each bar to the work really done, so it ends at its true total."""
        if self.progress is None:
            return
        for kind, task in self.tasks.items():
            step, _ = self.last[kind]
            self.progress.update(task, completed=step, total=step)


@contextmanager
def run_progress(label: str, *, unit: str = "steps", bound: bool = False, disable: bool = False,
                 hint: str = "") -> Iterator[RunBars]:
    """Bars on stderr for one run (only on a terminal; the run-time estimate is printed regardless)."""
    console = Console(stderr=True)
    if disable or not (sys.stderr.isatty() or console.is_terminal):
        bars = RunBars(None, console, label, unit=unit, bound=bound, hint=hint)
        yield bars
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[unit]}"), TextColumn("loss {task.fields[loss]:.3e}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        bars = RunBars(progress, console, label, unit=unit, bound=bound, hint=hint)
        try:
            yield bars
        finally:
            bars.finish()


@contextmanager
def progress_bar(label: str, *, disable: bool = False, unit: str = "steps") -> Iterator[ProgressFn]:
    """A single ``progress(step, total, loss)`` bar on stderr (see :func:`run_progress`)."""
    with run_progress(label, unit=unit, disable=disable) as bars:
        yield bars.attack


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table: ``4.2e-05``, ``23.81``; ``–`` for missing."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


SCORE_COLUMNS = (("psnr", "PSNR dB"), ("ssim", "SSIM"), ("mse", "MSE"), ("lpips", "LPIPS"),
                 ("label_accuracy", "label acc"), ("exact_fraction", "exact"), ("epsilon", "ε"),
                 ("recovered", "recovered"))


def fit_cells(fit: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The fit as (column, value) pairs: cosine distance and relative L2, or the exact residual."""
    if not fit:
        return []
    cells = []
    if fit.get("cosine_distance") is not None:
        cells += [("fit: cos dist", fmt(fit["cosine_distance"], 3)), ("fit: rel L2", fmt(fit["relative_l2"], 3))]
    if fit.get("residual") is not None:
        cells.append(("fit: residual", fmt(fit["residual"], 3)))
    return cells


def print_fit_warning(fit: dict[str, Any] | None, console: Console | None = None) -> None:
    """The poor-fit warning, if any, on stderr."""
    if fit and fit.get("warning"):
        (console or Console(stderr=True)).print(f"[bold yellow]warning:[/] {fit['warning']}", highlight=False)


def print_summary(summary: dict[str, Any]) -> None:
    """The results table of one run; LPIPS and defense facts only when they were computed."""
    m = summary["metrics"]
    cells = [(title, fmt(m[key])) for key, title in SCORE_COLUMNS if m.get(key) is not None]
    cells += fit_cells(summary.get("fit")) + [("seconds", fmt(summary["seconds"], 3))]
    title = (f"{summary['attack']} · {summary['dataset']} · {summary['model']} · b={summary['batch_size']} · "
             f"{summary['protocol']} · seed {summary['seed']}")
    console = Console()
    show_table(title, [c for c, _ in cells], [[v for _, v in cells]], console=console,
               right=[c for c, _ in cells])
    state = summary.get("model_state")
    if state and state.get("test_accuracy") is not None:
        console.print(f"model: {state['state']}, test accuracy {state['test_accuracy']:.3f} "
                      f"(chance {state['chance']:.3f}){', from cache' if state.get('cached') else ''}")
    if summary.get("assumptions") is not None:
        from gradleak.experiment.assumptions import mark_assumptions, upper_bound

        marked = mark_assumptions(summary["assumptions"])
        console.print(f"split {summary.get('split')}, preset {summary.get('preset')}; assumptions: {marked}"
                      + ("  (* upper bound: a best case for the attacker)" if upper_bound(summary["assumptions"])
                         else ""), highlight=False)
    if summary.get("out_dir"):
        console.print(f"run folder: {summary['out_dir']}")
    print_fit_warning(summary.get("fit"))


def print_update_summary(summary: dict[str, Any]) -> None:
    """What an attack on a saved update recovered (there is no truth to score against)."""
    cells = [("attack", summary["attack"]), ("model", summary["model"]),
             ("examples", str(summary["num_examples"])),
             ("labels", "unknown" if summary["labels"] is None else
              f"{summary['labels']} ({summary.get('labels_from') or 'attack'})")]
    cells += fit_cells(summary.get("fit")) + [("seconds", fmt(summary["seconds"], 3))]
    console = Console()
    show_table(f"{summary['attack']} on {summary['update']}", [c for c, _ in cells], [[v for _, v in cells]],
               console=console)
    state = summary.get("model_state")
    if state and state.get("test_accuracy") is not None:
        console.print(f"model: {state['state']}, test accuracy {state['test_accuracy']:.3f} "
                      f"(chance {state['chance']:.3f})")
    console.print(f"reconstruction written to {summary['out_dir']}")
    print_fit_warning(summary.get("fit"))


def print_list(listing: dict[str, dict[str, str]]) -> None:
    """Registered names with their one-line descriptions."""
    console = Console()
    for kind, entries in listing.items():
        show_table(kind, ["name", "description"], [[n, d] for n, d in entries.items()], console=console)
