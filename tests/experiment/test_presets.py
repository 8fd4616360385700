"""Attack presets (default / paper / tiny), the resolved hyper-parameters and assumptions of a run."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from gradleak.cli import main
from gradleak.core.errors import ConfigError
from gradleak.core.registry import ATTACKS, create_attack, list_attacks
from gradleak.experiment import Scenario, run_scenario
from gradleak.experiment.assumptions import ASSUMPTIONS, mark_assumptions
from gradleak.experiment.presets import SOURCE_TAGS, preset_names, preset_sources
from gradleak.experiment.scenario import make_attack
from gradleak.fl import fedsgd_update
from gradleak.models import build_model


@pytest.mark.parametrize("name", list_attacks())
def test_every_attack_has_a_paper_preset_whose_every_value_names_its_source(name):
    cls = ATTACKS.get(name)
    paper = cls.presets["paper"]
    assert paper and set(paper) <= set(inspect.signature(cls).parameters)
    assert set(cls.paper_sources) == set(paper), "every paper value needs a source (or a [GUESS] mark)"
    assert all(src.startswith(SOURCE_TAGS) for src in cls.paper_sources.values())
    assert cls.default_tuned_on and preset_names(name)[:1] == ["default"]
    create_attack(name, **paper)  # the preset is a valid setting
    assert "*" in preset_sources(name, "default")


def test_explicit_options_beat_the_preset_and_the_scenario_labels_beat_the_preset():
    attack = make_attack("ig", {"steps": 7}, seed=3, preset="paper")
    assert (attack.steps, attack.tv, attack.restarts, attack.seed) == (7, 2e-4, 4, 3)
    assert make_attack("gradinversion", {}, seed=0, labels="known", preset="paper").labels == "known"
    assert make_attack("gradinversion", {"labels": "llg"}, seed=0, labels="known", preset="paper").labels == "llg"
    assert make_attack("geng", {}, seed=0, labels="own").labels == "geng"  # its own label step
    with pytest.raises(ConfigError, match="no preset 'fast'.*default, tiny, paper"):
        Scenario(attack="ig", attack_preset="fast").validate()


def test_ggl_paper_preset_is_the_papers_cma_budget_and_population():
    ggl = make_attack("ggl", {}, seed=0, preset="paper")
    assert (ggl.optimizer, ggl.evaluations, ggl.population) == ("cma", 40000, None)
    model = build_model("lenet", shape=(1, 28, 28), num_classes=10, seed=0)
    update = fedsgd_update(model, torch.rand(1, 1, 28, 28), torch.tensor([3]))
    rec = create_attack("ggl", optimizer="cma", evaluations=100).run(model, update, shape=(1, 28, 28))
    # nevergrad's default population in 128-d, and the budget is a cap: 5 generations of 18
    assert rec.info["population"] == 18 and rec.info["evaluations"] == 5 * 18 + 1 <= 100


def test_cli_json_and_config_carry_split_indices_preset_hyperparameters_assumptions(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["attack", "ig", "--dataset", "digits", "--model", "mlp", "--preset", "paper", "--steps", "2",
                 "--restarts", "1", "--json", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    config = json.loads((out / "config.json").read_text())
    for record in (summary, config):
        assert record["split"] == "attack" and len(record["indices"]) == 1
        assert record["preset"] == "paper"
        assert record["hyperparameters"]["tv"] == 2e-4 and record["hyperparameters"]["steps"] == 2
        assert record["assumptions"] == ["untrained_model", "known_batch_size"]
    assert config["scenario"]["labels"] == "own" and summary["labels_from"] == "idlg"
    assert main(["attack", "ig", "--dataset", "digits", "--model", "mlp", "--steps", "1", "--labels", "known",
                 "--no-progress", "--out", str(tmp_path / "r2")]) == 0
    printed = capsys.readouterr().out
    assert "known labels*" in printed and "upper bound" in printed


def test_assumptions_follow_the_threat_model():
    base = dict(attack="ig", dataset="digits", model="convnet", attack_options={"steps": 1})
    own = run_scenario(Scenario(**base))
    assert own.assumptions == ["untrained_model", "known_batch_size"]
    known = run_scenario(Scenario(**base, labels="known"))
    assert known.assumptions[0] == "known_labels"
    defended = run_scenario(Scenario(**base, defenses=("prune:ratio=0.5",), adaptive=True, protocol="fedavg"))
    assert {"known_defense", "known_local_training"} <= set(defended.assumptions)
    bn = run_scenario(Scenario(attack="ig", dataset="digits", model="resnet20", model_options={"width": 2},
                               attack_options={"steps": 1}, share_buffers=True, mode="train"))
    assert "shared_bn_statistics" in bn.assumptions and "eval_mode_bn" not in bn.assumptions
    assert set(ASSUMPTIONS) >= set(bn.assumptions)
    assert mark_assumptions(known.assumptions).startswith("known labels*")


def test_the_report_has_an_assumptions_column(tmp_path):
    from gradleak.report import write_report
    from gradleak.sweep import parse_grid
    from gradleak.sweep.backends import run_sweep

    grid = parse_grid('[base]\nattack = "ig"\ndataset = "digits"\nmodel = "mlp"\nsteps = 1\n'
                      '[grid]\nlabels = ["own", "known"]\n')
    db = tmp_path / "r.sqlite"
    run_sweep(grid, db, workers=0)
    html = write_report(db, None)
    assert "<th" in html and ">assumptions</th>" in html and "known labels*" in html
    assert "untrained model*, known batch size" in html
    md = write_report(db, None, fmt="md")
    assert "assumptions" in md.splitlines()[0] and "untrained model\\*" in md
