"""One sweep run, or a group of runs attacked in one batched pass, executed in a worker.

Each returns plain result dicts (metrics, per-image scores, the ``reconstruction.png`` bytes, the
run's provenance) and never raises for a failing run: the failure is a result to store.
:mod:`gradleak.sweep.backends` decides where these execute.

Example:
    >>> from gradleak.experiment import Scenario
    >>> from gradleak.sweep import scenario_config
    >>> s = Scenario(attack="ig", dataset="digits", model="mlp", attack_options={"steps": 2})
    >>> [r["status"] for r in execute_unit({"key": "k", "config": scenario_config(s), "threads": 1})]
    ['done']
"""

from __future__ import annotations

import logging
import platform
import socket
import time
import traceback
from typing import Any

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    """Versions of what produced a result."""
    import numpy
    import torch

    from gradleak.core.version import __version__

    return {"gradleak": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def execute_run(task: dict[str, Any]) -> dict[str, Any]:
    """Run one planned scenario and return its result (never raises for a failing run).

    Args:
        task: ``key``, ``config`` (a scenario dict), optional ``preset``, ``threads`` and ``device``.
    """
    import torch

    from gradleak.experiment.run import run_scenario
    from gradleak.experiment.scenario import scenario_from_dict

    if task.get("threads"):
        torch.set_num_threads(int(task["threads"]))
    result: dict[str, Any] = {"key": task["key"], "preset": task.get("preset"), "config": task["config"],
                              "versions": versions(), "host": socket.gethostname()}
    start = time.perf_counter()
    try:
        done_result(result, run_scenario(scenario_from_dict(task["config"]), device=task.get("device")))
    except Exception as err:  # a failing run is a result to store, not a crash of the sweep
        log.debug("run %s failed", task["key"], exc_info=True)
        result.update(status="failed", error=f"{type(err).__name__}: {err}",
                      detail={"traceback": traceback.format_exc(limit=8)})
    result["wall_seconds"] = time.perf_counter() - start
    return result


def done_result(result: dict[str, Any], run: Any) -> dict[str, Any]:
    """Fill ``result`` from a finished :class:`~gradleak.core.results.RunResult` (status ``done``)."""
    from gradleak.experiment.run import reconstruction_png

    rec = run.reconstruction
    result["image"] = reconstruction_png(rec, run.truth, run.matching)
    losses = rec.loss_history
    result.update(status="done", metrics=run.metrics, seconds=run.seconds,
                  detail={"per_image": run.per_image, "matching": run.matching,
                          "final_loss": losses[-1] if losses else None, "info": rec.info, "fit": run.fit,
                          "split": run.split, "indices": run.indices, "preset": run.preset,
                          "hyperparameters": run.hyperparameters, "assumptions": run.assumptions})
    return result


def execute_unit(unit: dict[str, Any]) -> list[dict[str, Any]]:
    """One task, or a group of tasks (``{"group": [...]}``) attacked in one batched pass; their results."""
    if "group" in unit:
        return execute_group(unit["group"])
    return [execute_run(unit)]


def execute_group(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run a group's scenarios with one batched attack; one result per task (never raises)."""
    import torch

    from gradleak.experiment.batched import run_scenarios
    from gradleak.experiment.scenario import scenario_from_dict

    if tasks[0].get("threads"):
        torch.set_num_threads(int(tasks[0]["threads"]))
    start = time.perf_counter()
    try:
        runs = run_scenarios([scenario_from_dict(t["config"]) for t in tasks], device=tasks[0].get("device"))
    except Exception:  # one bad run must not fail the others: run them one at a time
        return [execute_run(t) for t in tasks]
    wall = (time.perf_counter() - start) / len(tasks)
    results = []
    for task, run in zip(tasks, runs, strict=True):
        result: dict[str, Any] = {"key": task["key"], "preset": task.get("preset"), "config": task["config"],
                                  "versions": versions(), "host": socket.gethostname()}
        try:
            done_result(result, run)
        except Exception as err:  # e.g. the image could not be drawn: this run failed, the others did not
            result.update(status="failed", error=f"{type(err).__name__}: {err}")
        result["wall_seconds"] = wall
        results.append(result)
    return results
