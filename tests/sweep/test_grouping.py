"""Sweep runs that attack the same model travel together and are attacked in one batched pass."""

from __future__ import annotations

import pytest
import torch

from gradleak.core.device import DeviceError
from gradleak.sweep import parse_grid
from gradleak.sweep.backends import run_sweep
from gradleak.sweep.grouping import plan_units
from gradleak.sweep.store import Store

GRID = """
[base]
attack = "ig"
dataset = "digits"
model = "convnet"
steps = 4
batch_size = 2
[grid]
defense = ["none", "noise:sigma=0.001", "prune:ratio=0.5"]
label_mode = ["random", "{second}"]
"""


def _metrics(db):
    with Store(db, readonly=True) as store:
        return {r["key"]: (r["status"], r["psnr"], r["config"]["defenses"]) for r in store.runs()}


def test_grouped_sweep_equals_the_ungrouped_one(tmp_path):
    grid = parse_grid(GRID.format(second="same"))
    grouped, alone = tmp_path / "g.sqlite", tmp_path / "a.sqlite"
    assert run_sweep(grid, grouped, workers=0)["done"] == 6
    assert run_sweep(grid, alone, workers=0, group=False)["done"] == 6
    a, b = _metrics(grouped), _metrics(alone)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key][0] == b[key][0] == "done" and a[key][1] == pytest.approx(b[key][1], abs=1e-3)
    with Store(grouped, readonly=True) as store:
        infos = [r["detail"]["info"] for r in store.runs()]
    assert {info.get("batched") for info in infos} == {6}


def test_a_broken_run_fails_alone_in_its_group(tmp_path):
    # distinct labels cannot fill a batch of 12 from 10 classes: that run fails, its group-mates do not
    grid = parse_grid(GRID.format(second="distinct").replace("batch_size = 2", "batch_size = 12"))
    counts = run_sweep(grid, tmp_path / "r.sqlite", workers=0)
    assert counts == {"total": 6, "skipped": 0, "done": 3, "failed": 3, "unstored": 0}


def test_units_carry_the_device_and_ray_asks_for_gpus():
    tasks = [{"key": "a", "config": {"attack": "ig"}}, {"key": "b", "config": {"attack": "ig"}}]
    units, gpus = plan_units(tasks, device="cuda:1", backend="ray")
    assert gpus == 1.0 and all(t["device"] == "cuda" for t in units[0]["group"])
    units, gpus = plan_units(tasks, device="cpu", backend="ray", group=False)
    assert gpus == 0.0 and [t["device"] for t in units] == ["cpu", "cpu"]
    assert plan_units(tasks, device="cuda", backend="ray", gpus_per_run=0.25)[1] == 0.25
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError):
            plan_units(tasks, device="cuda", backend="local")
