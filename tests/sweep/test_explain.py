"""Grid files: how [base], [grid] and presets combine, and the dry run that says why."""

from __future__ import annotations

from collections import Counter

import pytest

from gradleak.cli import main
from gradleak.sweep.backends import default_workers, run_local
from gradleak.sweep.explain import explain_grid, explanation_lines
from gradleak.sweep.grid import parse_grid

GRID = """
[base]
attack = "ig"
dataset = "digits"
model = "mlp"
steps = 2
batch_size = 1

[grid]
seed = [0, 1, 2]
batch_size = [1, 2]

[presets.small]
grid.defense = ["none", "noise:sigma=0.01", "noise:sigma=0.001"]

[presets.big]
batch_size = 4
"""


def test_grid_lists_cross_with_every_preset_unless_the_preset_sets_the_option():
    grid = parse_grid(GRID)
    per_preset = Counter(r.preset for r in grid.runs)
    # small: seed 3 × batch_size 2 (from [grid]) × defense 3 (its own); big: seed 3 × batch_size 4 (replaces [grid])
    assert per_preset == {"small": 18, "big": 3}
    assert {r.scenario.batch_size for r in grid.runs if r.preset == "big"} == {4}
    assert {r.scenario.seed for r in grid.runs if r.preset == "big"} == {0, 1, 2}
    plans = {p["preset"]: p for p in explain_grid(GRID)}
    assert {name: plan["runs"] for name, plan in plans.items()} == dict(per_preset)
    assert plans["big"]["axes"]["batch_size"] == {"values": [4], "source": "[presets.big]",
                                                  "replaces": "[grid] [1, 2]"}
    assert plans["small"]["axes"]["batch_size"]["source"] == "[grid]"
    assert plans["small"]["axes"]["batch_size"]["replaces"] == "[base] 1"


def test_dry_run_says_what_and_why(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    assert main(["sweep", str(grid), "--db", str(tmp_path / "r.sqlite"), "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "21 runs planned" in out and "nothing was run" in out
    assert "[presets.big] sets batch_size = 4, replacing [grid] [1, 2]" in out
    assert "noise:sigma=0.01" in out and "noise:sigma=0.001" in out
    lines = explanation_lines(explain_grid(GRID, presets=["small"]))
    assert lines[0].startswith("small: 18 runs = batch_size [1, 2] ([grid]) × seed [0, 1, 2] ([grid]) × defenses")


def test_sweeps_default_to_a_worker_per_core_and_name_each_run_as_it_starts(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert default_workers() == 6
    grid = parse_grid(GRID, presets=["big"])
    tasks = [{"key": r.key, "preset": r.preset, "config": r.scenario.__dict__ | {"defenses": []}}
             for r in grid.runs[:2]]
    events = []
    for result in run_local(tasks, workers=0, on_begin=lambda t: events.append(("begin", t["key"]))):
        events.append(("result", result["key"]))
    assert events == [("begin", tasks[0]["key"]), ("result", tasks[0]["key"]),
                      ("begin", tasks[1]["key"]), ("result", tasks[1]["key"])]


@pytest.mark.parametrize("bad", ["[grid]\nseed = 3", "[presets.x]\ngrid.seed = 3"])
def test_bad_lists_still_refused(bad):
    from gradleak.core.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a list"):
        parse_grid(bad)
