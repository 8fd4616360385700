"""Several scenarios that attack the same model, run as one batched attack (``Attack.run_many``).

Scenarios that differ only in what shapes the *client's* update (its defenses, the protocol and
local training, how its labels were drawn) attack the same model with the same attack: each is
prepared on its own exactly as :func:`~gradleak.experiment.run.run_scenario` prepares it, then
their updates go through one ``run_many`` call, and each is scored on its own. Sweeps group their
runs with :func:`batch_key`; the results equal one run at a time to float tolerance.

Example:
    >>> from gradleak.experiment import Scenario
    >>> plain = Scenario(attack="ig", dataset="digits", model="convnet", attack_options={"steps": 3})
    >>> noisy = Scenario(attack="ig", dataset="digits", model="convnet", attack_options={"steps": 3},
    ...                  defenses=("noise:sigma=0.01",))
    >>> batch_key(plain) == batch_key(noisy)
    True
    >>> [r.reconstruction.info["batched"] for r in run_scenarios([plain, noisy])]
    [2, 2]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from gradleak.attacks.batched import same_model
from gradleak.core.results import RunResult
from gradleak.core.types import Progress
from gradleak.experiment.run import PreparedRun, finish_run, prepare_run
from gradleak.experiment.scenario import Scenario

CLIENT_SIDE = ("defenses", "protocol", "local_lr", "local_epochs", "local_batch_size", "local_steps",
               "label_mode", "share_buffers")
"""Scenario fields that change only the client's update, never the attacked model or the attack."""


def batch_key(scenario: Scenario) -> str | None:
    """Scenarios with equal keys attack the same model with the same attack (``None``: never batched).

    Adaptive runs are never batched: their attack copies their own update's defenses.
    """
    if scenario.adaptive:
        return None
    fields = {k: v for k, v in asdict(scenario).items() if k not in CLIENT_SIDE}
    return json.dumps(fields, sort_keys=True, default=str)


def run_scenarios(scenarios: Sequence[Scenario], *, device: Any = None,
                  progress: Progress | None = None) -> list[RunResult]:
    """Run scenarios of one :func:`batch_key` with batched attacks; results in the order given.

    Each scenario is prepared like a single run; runs whose (defended) models are identical share
    one ``run_many`` call (a training defense that changes the model, e.g. DP-SGD's module
    replacement, gets its own). Nothing is written to disk.

    Raises:
        ConfigError: the scenarios do not share one batch key.
    """
    from gradleak.core.errors import ConfigError

    keys = {batch_key(s) for s in scenarios}
    if len(keys) > 1 or None in keys:
        raise ConfigError("run_scenarios needs scenarios that differ only on the client's side "
                          f"({', '.join(CLIENT_SIDE)}) and are not adaptive; run the others with run_scenario")
    runs = [prepare_run(s, device=device) for s in scenarios]
    groups: list[list[int]] = []
    for i, run in enumerate(runs):
        for group in groups:
            if same_model(runs[group[0]].model, run.model):
                group.append(i)
                break
        else:
            groups.append([i])
    results: list[RunResult | None] = [None] * len(runs)
    for group in groups:
        first: PreparedRun = runs[group[0]]
        recs = first.attack.run_many(first.model, [runs[i].update for i in group], shape=first.shape,
                                     progress=progress)
        for i, rec in zip(group, recs, strict=True):
            results[i] = finish_run(runs[i], rec)
    return results  # type: ignore[return-value]
