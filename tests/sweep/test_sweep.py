"""Sweeps: grid parsing and refusal, stable hashes, crash-safe resume (SIGKILL), local vs Ray."""

from __future__ import annotations

import importlib.util
import json

import pytest

from gradleak.cli import main
from gradleak.core.errors import ConfigError
from gradleak.experiment import Scenario
from gradleak.sweep import load_grid, parse_grid, scenario_hash
from gradleak.sweep.backends import run_sweep
from gradleak.sweep.store import Store

TINY = """
[base]
attack = "ig"
dataset = "digits"
model = "mlp"
steps = {steps}
[grid]
batch_size = [1, 2]
seed = {seeds}
"""


def test_grid_expands_layers_presets_and_aliases():
    grid = parse_grid("""
[base]
attack = "ig"
dataset = "digits"
model = "mlp"
steps = 4
[grid]
seed = [0, 1]
[per_attack.ig]
tv = 0.001
steps = 9
[presets.batch]
grid.batch-size = [1, 2, 4]
[presets.defended]
batch_size = 2
steps = 2
defense = "noise:sigma=0.01"
[presets.defended.grid]
param.lr = [0.1, 0.01]
[presets.chain]
grid.defense = ["none", ["clip:norm=1.0", "noise:sigma=0.01"]]
""")
    by_preset: dict[str, list[Scenario]] = {}
    for run in grid.runs:
        by_preset.setdefault(run.preset, []).append(run.scenario)
    assert grid.presets == ("batch", "defended", "chain")
    assert sorted({s.batch_size for s in by_preset["batch"]}) == [1, 2, 4] and len(by_preset["batch"]) == 6
    # top-level per_attack beats [base]; a preset's own option beats top-level per_attack
    assert all(s.attack_options["tv"] == 0.001 and s.attack_options["steps"] == 9 for s in by_preset["batch"])
    defended = by_preset["defended"]
    assert all(s.attack_options["steps"] == 2 for s in defended)
    assert {s.attack_options["lr"] for s in defended} == {0.1, 0.01} and len(defended) == 4
    assert all(s.defenses == ("noise:sigma=0.01",) for s in defended)
    # the undefended b=1 runs of "chain" are the same scenarios as in "batch": stored once
    chains = {s.defenses for s in by_preset["chain"]}
    assert chains == {("clip:norm=1.0", "noise:sigma=0.01")}
    assert len({r.key for r in grid.runs}) == len(grid.runs) == 6 + 4 + 2


def test_hash_is_stable_and_ignores_defaults():
    assert scenario_hash(Scenario()) == scenario_hash(Scenario(seed=0, attack_options={}))
    assert scenario_hash(Scenario(seed=1)) != scenario_hash(Scenario(seed=2))
    assert scenario_hash(Scenario(attack_options={"a": 1, "b": 2})) == scenario_hash(
        Scenario(attack_options={"b": 2, "a": 1}))
    # a literal: resuming an old database depends on hashes never changing between versions
    assert scenario_hash(Scenario(attack="ig", dataset="digits", seed=1)) == "0708999d32c66efc"


def test_malformed_toml_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[base]\nattack = "ig\n')
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_grid(bad)
    assert main(["sweep", str(bad), "--db", str(tmp_path / "r.sqlite")]) == 2
    assert not (tmp_path / "r.sqlite").exists()


def test_every_problem_is_listed_before_anything_runs(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text("""
[base]
attack = "ig"
dataset = "digits"
batchsize = 3
out = "runs/x"
device = "cuda"
[grid]
seed = [0, "one"]
model = ["mlp", "nosuchmodel"]
defense = ["none", "nosuchdefense:x=1"]
param.nosuchoption = [1]
[extra]
""")
    assert main(["sweep", str(grid), "--db", str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err
    for needle in ("'batchsize' is not an option", "did you mean batch_size", "'out' is a per-run CLI flag",
                   "'device' is chosen for the whole sweep on its command line (gradleak sweep GRID --device",
                   "seed must be int, got 'one'", "unknown model 'nosuchmodel'",
                   "unknown defense 'nosuchdefense'", "no option(s) nosuchoption", "[extra]"):
        assert needle in err, needle
    assert not (tmp_path / "r.sqlite").exists()


def test_too_large_expansion_is_refused_with_other_problems():
    text = TINY.format(steps=2, seeds=list(range(101))).replace("[1, 2]", str(list(range(1, 101))))
    text += 'model = ["mlp", "nosuchmodel"]\n'
    with pytest.raises(ConfigError) as info:
        parse_grid(text)
    message = str(info.value)
    assert "expands to 20200 runs, more than the limit of 10000" in message
    assert "2 model × 100 batch_size × 101 seed" in message
    assert "unknown model 'nosuchmodel'" in message  # still listed without expanding everything
    with pytest.raises(ConfigError, match="more than the limit of 3"):
        parse_grid(TINY.format(steps=2, seeds=[0, 1]), max_runs=3)
    assert len(parse_grid(TINY.format(steps=2, seeds=[0, 1]), max_runs=4).runs) == 4


def test_failed_runs_are_stored_and_retried_only_when_asked(tmp_path):
    grid = parse_grid(TINY.format(steps=2, seeds=[0]) + 'checkpoint = ["none", "/no/such/weights.pt"]\n')
    db = tmp_path / "r.sqlite"
    first = run_sweep(grid, db, workers=0)
    assert first == {"total": 4, "skipped": 0, "done": 2, "failed": 2, "unstored": 0}
    with Store(db, readonly=True) as store:
        failed = store.runs("failed")
    assert len(failed) == 2 and all(r["error"] and r["config"]["checkpoint"] for r in failed)
    assert run_sweep(grid, db, workers=0) == {"total": 4, "skipped": 4, "done": 0, "failed": 0, "unstored": 0}
    assert run_sweep(grid, db, workers=0, retry_failed=True) == {"total": 4, "skipped": 2, "done": 0,
                                                                  "failed": 2, "unstored": 0}
    with Store(db, readonly=True) as store:
        assert sorted(r["attempts"] for r in store.runs()) == [1, 1, 2, 2]


@pytest.mark.slow
def test_local_and_ray_give_identical_metrics(tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'gradleak[ray]')")
    import torch

    grid = parse_grid(TINY.format(steps=5, seeds=[0, 1]))
    results = {}
    threads = torch.get_num_threads()
    # local in this process (workers=0, which the SIGKILL test's pool run complements) and a
    # local Ray with 2 CPUs; both give each run one torch thread
    for backend, workers in (("local", 0), ("ray", 2)):
        db = tmp_path / f"{backend}.sqlite"
        try:
            counts = run_sweep(grid, db, backend=backend, workers=workers, cpus_per_run=1)
        finally:
            torch.set_num_threads(threads)
        assert counts["done"] == 4, counts
        with Store(db, readonly=True) as store:
            results[backend] = {r["key"]: {m: r[m] for m in ("mse", "psnr", "ssim", "label_accuracy")}
                                for r in store.runs()}
    assert results["local"] == results["ray"]
    assert len(results["ray"]) == 4


def test_dry_run_lists_plan_and_marks_stored(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text(TINY.format(steps=2, seeds=[0]))
    assert main(["sweep", str(grid), "--db", str(tmp_path / "r.sqlite"), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan) == 2 and {p["batch_size"] for p in plan} == {1, 2}
    assert not (tmp_path / "r.sqlite").exists()


def test_bad_defense_chain_is_refused_even_after_a_good_one():
    text = TINY.format(steps=2, seeds=[0]) + 'defense = ["none", ["aggregate:clients=2", "noise:sigma=0.1"]]\n'
    with pytest.raises(ConfigError, match="aggregate must appear once, as the last defense"):
        parse_grid(text)
