"""Tables that never truncate, progress bars that end at the true total, run-time estimates."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from gradleak.cli.output import LONG_RUN, RunBars, RunTimeEstimate
from gradleak.cli.tables import show_table


def _render(width: int, rows, columns=("key", "preset", "defenses")) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    show_table("plan", list(columns), rows, console=console)
    return console.export_text()


def test_narrow_tables_switch_to_blocks_and_keep_every_value():
    rows = [["e2756da35d6817dd", "noise", "noise:sigma=0.01"], ["cb46e02133b075c2", "noise", "noise:sigma=0.001"]]
    for width in (30, 45, 200):
        text = _render(width, rows)
        assert "noise:sigma=0.01" in text and "noise:sigma=0.001" in text and "…" not in text
    assert "┃" in _render(200, rows) and "┃" not in _render(30, rows)   # grid when it fits, blocks otherwise


def test_long_cells_wrap_at_words_instead_of_being_cut():
    source = "your CIFAR-100 python files (--data-dir; coarse=True: 20 classes)"
    text = _render(60, [["cifar100", "x", source]], ("name", "shape", "source"))
    assert "…" not in text and all(word in text for word in source.split())


def _bars(bound: bool):
    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    progress = Progress(console=console)
    return progress, RunBars(progress, console, "spear", unit="sampled row subsets", bound=bound)


def test_a_bar_that_stops_early_finishes_at_the_work_done():
    progress, bars = _bars(bound=True)
    bars.attack(32768, 50_000_000, 1.0)
    bars.attack(65536, 50_000_000, 0.0)
    task = progress.tasks[0]
    assert task.total is None  # a cap, not a total: no fake 65536/50000000 and no ETA
    bars.finish()
    assert (task.completed, task.total) == (65536, 65536) and task.finished


def test_training_gets_its_own_bar():
    progress, bars = _bars(bound=False)
    bars.training(3, 10, 2.3)
    bars.attack(1, 100, 0.5)
    assert [t.description for t in progress.tasks] == ["training the model", "spear"]
    assert progress.tasks[0].fields["unit"] == "mini-batches" and progress.tasks[0].total == 10


def test_estimate_uses_the_later_steps_not_the_slow_first_ones():
    estimate = RunTimeEstimate()
    times = [0.0, 4.0, 4.5, 5.0, 5.5, 6.0]          # a slow warm-up, then 0.5 s per step
    results = [estimate.observe(step, 1000, now=t) for step, t in enumerate(times, 1)]
    assert results[:4] == [None] * 4
    assert results[-1] == 0.5 * (1000 - 6)


def test_long_runs_print_their_expected_duration(monkeypatch):
    import gradleak.cli.output as output

    clock = iter([0.0, 0.0, 30.0, 31.0, 32.0, 33.0, 34.0, 35.0, 36.0])
    monkeypatch.setattr(output.time, "perf_counter", lambda: next(clock))
    progress, bars = _bars(bound=False)
    bars.unit, bars.label = "Adam steps", "gradinversion"
    notes = []
    bars.note = notes.append
    for step in range(1, 7):
        bars.attack(step, 1000, 0.1)
    assert len(notes) == 1 and "gradinversion: expected run time about" in notes[0]
    assert "1000 Adam steps" in notes[0] and LONG_RUN < 1000


def test_short_runs_print_nothing():
    progress, bars = _bars(bound=False)
    notes = []
    bars.note = notes.append
    for step in range(1, 50):
        bars.attack(step, 50, 0.1)
    assert notes == []


def test_plain_sweep_lines_are_never_wrapped_in_a_log():
    from gradleak.cli.sweep import SweepBar

    out = io.StringIO()
    bar = SweepBar(None, None, Console(file=out, width=80, force_terminal=False))
    bar.on_start({"total": 2, "skipped": 0, "to_run": 2})
    config = {"attack": "ig", "batch_size": 1, "seed": 1, "defenses": ["noise:sigma=0.001", "clip:max_norm=1.0"]}
    bar.on_result({"status": "done", "key": "fce5b7d1bc553b05", "config": config, "metrics": {"psnr": 24.53}})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and len(lines[1]) > 80  # longer than the console, still one line
    assert lines[1].startswith("[1/2] done fce5b7d1bc553b05 ig b=1 seed=1 noise:sigma=0.001 + clip")
    assert lines[1].endswith("psnr=24.53 (ETA 0 s)")
