"""Which sweep runs travel together to be attacked in one batched pass, and on which device.

Runs whose scenarios share :func:`~gradleak.experiment.batched.batch_key` (same attack and
options, model, weights, data, seed; they differ only on the client's side: defenses, protocol,
local training, label mode) form one unit of work: a worker prepares each run as usual, attacks
all their updates with one ``Attack.run_many`` call and returns one result per run
(:func:`gradleak.sweep.units.execute_group`). A group that cannot run together (one of its runs
is broken) falls back to one run at a time, so a bad run still fails alone.

Example:
    >>> from gradleak.experiment import Scenario
    >>> from gradleak.sweep.grid import scenario_config
    >>> task = lambda key, **kw: {"key": key, "config": scenario_config(Scenario(attack="ig", **kw))}
    >>> units = group_tasks([task("a"), task("b", defenses=("noise:sigma=0.1",)), task("c", seed=1)])
    >>> [[t["key"] for t in u["group"]] if "group" in u else u["key"] for u in units]
    [['a', 'b'], 'c']
"""

from __future__ import annotations

from typing import Any

from gradleak.core.device import check_device_spec, resolve_device

MAX_GROUP = 64
"""The most runs one batched attack takes (memory grows with the group)."""


def sweep_device(device: str, backend: str) -> str:
    """The device every task carries. Local: resolved now (a missing GPU is a one-line error before
    anything runs). Ray: only checked here (the GPUs are on the workers); ``cuda:N`` becomes ``cuda``,
    the GPU Ray assigned to the task."""
    if backend == "ray":
        spec = check_device_spec(device)
        return "cuda" if spec.startswith("cuda") else spec
    return str(resolve_device(device))


def plan_units(tasks: list[dict[str, Any]], *, device: str = "cpu", backend: str = "local", group: bool = True,
               gpus_per_run: float | None = None) -> tuple[list[dict[str, Any]], float]:
    """Tasks with their device, grouped into units of work, and the GPUs each unit asks Ray for."""
    dev = sweep_device(device, backend)
    tasks = [{**t, "device": dev} for t in tasks]
    gpus = gpus_per_run if gpus_per_run is not None else (1.0 if dev.startswith("cuda") else 0.0)
    return (group_tasks(tasks) if group else tasks), gpus


def group_tasks(tasks: list[dict[str, Any]], max_group: int = MAX_GROUP) -> list[dict[str, Any]]:
    """Units of work in plan order: a lone task as it is, runs of one batch key as ``{"group": [...]}``."""
    from gradleak.experiment.batched import batch_key
    from gradleak.experiment.scenario import scenario_from_dict

    groups: dict[Any, list[dict[str, Any]]] = {}
    for i, task in enumerate(tasks):
        try:
            key = batch_key(scenario_from_dict(task["config"]))
        except Exception:  # a config that does not parse fails on its own, in execute_run
            key = None
        groups.setdefault(("alone", i) if key is None else key, []).append(task)
    units = []
    for members in groups.values():
        for start in range(0, len(members), max_group):
            chunk = members[start:start + max_group]
            units.append(chunk[0] if len(chunk) == 1 else {"group": chunk})
    return units
