"""Scenarios that attack the same model run as one batched attack and score as if run one by one."""

from __future__ import annotations

import pytest

from gradleak.core.errors import ConfigError
from gradleak.experiment import Scenario, run_scenario
from gradleak.experiment.batched import batch_key, run_scenarios

BASE = {"attack": "ig", "dataset": "digits", "model": "convnet", "batch_size": 2, "attack_options": {"steps": 6}}


def test_batched_scenarios_score_as_separate_runs():
    scenarios = [Scenario(**BASE), Scenario(**BASE, defenses=("noise:sigma=0.001",)),
                 Scenario(**BASE, label_mode="distinct"),
                 Scenario(**BASE, protocol="fedavg", local_lr=0.01)]
    assert len({batch_key(s) for s in scenarios}) == 1
    batched = run_scenarios(scenarios, device="cpu")
    # the three FedSGD updates share one pass; the FedAvg delta (another update kind) gets its own
    assert [r.reconstruction.info.get("batched") for r in batched] == [3, 3, 3, None]
    for scenario, result in zip(scenarios, batched):
        alone = run_scenario(scenario)
        assert result.scenario == alone.scenario
        assert result.metrics["psnr"] == pytest.approx(alone.metrics["psnr"], abs=1e-3)
        assert result.metrics["label_accuracy"] == alone.metrics["label_accuracy"]
        assert result.truth.inputs.device.type == "cpu"


def test_batch_keys_separate_what_changes_the_model_or_the_attack():
    base = Scenario(**BASE)
    assert batch_key(Scenario(**{**BASE, "seed": 1})) != batch_key(base)
    assert batch_key(Scenario(**{**BASE, "attack_options": {"steps": 7}})) != batch_key(base)
    assert batch_key(Scenario(**BASE, mode="train")) != batch_key(base)
    assert batch_key(Scenario(**BASE, adaptive=True)) is None
    with pytest.raises(ConfigError, match="differ only on the client's side"):
        run_scenarios([base, Scenario(**{**BASE, "seed": 1})])
