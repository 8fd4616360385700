"""Where sweep runs execute: a local process pool or a Ray cluster; the driver alone writes SQLite.

Every run executes :func:`gradleak.sweep.units.execute_run` in a worker: it sets torch's thread count to the CPUs the
run was given, runs the scenario in memory, and returns the metrics, per-image scores and the
``reconstruction.png`` bytes (nothing is written to the worker's disk, so Ray nodes need no
shared filesystem). Any exception inside a run becomes a ``failed`` result with its error.

- ``local``: a ``spawn`` process pool, by default one worker per core, each run with one torch
  thread (``cpus_per_run``): the small models of a sweep gain little from intra-op threads,
  and several threaded runs on the same cores oversubscribe them.
  ``workers=0`` runs in the driver process itself. At most ``workers`` runs are in flight, so
  ``on_begin`` names exactly the runs that are executing.
- ``ray``: ``address="auto"`` joins a running cluster; otherwise a local Ray starts with
  ``workers`` CPUs. Each task asks Ray for ``cpus_per_run`` CPUs (default 1) and sets torch's
  threads from what Ray assigned. Needs ``pip install 'gradleak[ray]'``.

``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) is where every run's simulation and
attack execute; on a GPU device each Ray task also asks for ``num_gpus`` (default 1: Ray then
makes the GPU it assigned the task's ``cuda``). Runs that attack the same model with the same
attack (they differ only on the client's side: defenses, protocol, label mode; see
:mod:`gradleak.sweep.grouping`) travel together and are attacked in one batched pass
(``Attack.run_many``); ``group=False`` runs them one by one.

Example:
    >>> from gradleak.experiment import Scenario
    >>> from gradleak.sweep import scenario_config
    >>> from gradleak.sweep.units import execute_run
    >>> s = Scenario(attack="ig", dataset="digits", model="mlp", attack_options={"steps": 2})
    >>> execute_run({"key": "k", "config": scenario_config(s), "threads": 1})["status"]
    'done'
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import logging
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gradleak.core.errors import ConfigError, MissingDependencyError, StoreBusyError
from gradleak.core.limits import MAX_WORKERS
from gradleak.sweep.units import execute_unit
from gradleak.sweep.workers import init_worker, sigint_blocked, terminate_pool

log = logging.getLogger(__name__)
BACKENDS = ("local", "ray")


def _begin(on_begin: Any, unit: dict[str, Any]) -> None:
    if on_begin is not None:
        for task in _unit_tasks(unit):
            on_begin(task)


def _unit_tasks(unit: dict[str, Any]) -> list[dict[str, Any]]:
    return unit["group"] if "group" in unit else [unit]


def _died(task: dict[str, Any], why: str) -> dict[str, Any]:
    return {"key": task["key"], "preset": task.get("preset"), "config": task["config"],
            "status": "failed", "error": why, "versions": {}, "wall_seconds": None}


def default_workers() -> int:
    """One local worker per core."""
    return max(1, os.cpu_count() or 1)


def run_local(tasks: list[dict[str, Any]], *, workers: int | None = None, cpus_per_run: int | None = None,
              on_begin: Any = None) -> Iterator[dict[str, Any]]:
    """Execute tasks in a ``spawn`` process pool; yield results as they finish.

    Args:
        tasks: planned runs (``key``, ``config``, ``preset``), or groups of them (``{"group": [...]}``).
        workers: processes (default: one per core); ``0`` runs them one by one in this process
            (no isolation; for debugging and tests).
        cpus_per_run: torch threads per run (default 1).
        on_begin: ``fn(task)`` called when a run is handed to a worker.
    """
    check_backend_options("local", workers, None, cpus_per_run)
    workers = default_workers() if workers is None else workers
    if workers == 0:
        for task in tasks:
            _begin(on_begin, task)
            yield from execute_unit(with_threads(task, cpus_per_run))
        return
    threads = cpus_per_run or 1
    pending = list(reversed(tasks))
    context = multiprocessing.get_context("spawn")
    while pending:
        with sigint_blocked():
            pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker,
                                          initargs=(os.getpid(),))
        running: dict[cf.Future[dict[str, Any]], dict[str, Any]] = {}
        broken = False
        finished_cleanly = False
        try:
            while (pending or running) and not broken:
                while pending and len(running) < workers:
                    task = pending.pop()
                    with sigint_blocked():  # submit may spawn a worker
                        running[pool.submit(execute_unit, with_threads(task, threads))] = task
                    _begin(on_begin, task)
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    try:
                        results = future.result()
                    except cf.process.BrokenProcessPool:
                        if broken:  # lost with the pool, not the cause: run it again
                            pending.append(task)
                            continue
                        broken = True
                        results = [_died(t, "the worker process died (out of memory or a crash)")
                                   for t in _unit_tasks(task)]
                    yield from results
            pending.extend(running.values())  # in-flight runs lost with a broken pool run again
            finished_cleanly = True
        finally:
            if not finished_cleanly:  # Ctrl-C, an error, or the caller stopped early: no run outlives us
                terminate_pool(pool)
            pool.shutdown(wait=False, cancel_futures=True)


def with_threads(unit: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """``unit`` (a task or a group) with every task's torch thread count set."""
    if "group" in unit:
        return {"group": [{**t, "threads": threads} for t in unit["group"]]}
    return {**unit, "threads": threads}


def _ray_execute(unit: dict[str, Any]) -> list[dict[str, Any]]:
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return execute_unit(with_threads(unit, max(1, int(cpus))))


def start_ray(workers: int | None, address: str | None) -> bool:
    """Join the Ray cluster at ``address`` or start a local Ray; True when this call started it.

    A cluster that cannot be reached is one :class:`ConfigError` line (before any run is announced).
    """
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "ray") from None
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise ConfigError(f"could not start or join {where} ({first[:200]}); start one with "
                          "'ray start --head', or drop --address to start a local Ray") from None
    return True


def run_ray(tasks: list[dict[str, Any]], *, workers: int | None = None, address: str | None = None,
            cpus_per_run: int | None = None, on_begin: Any = None,
            gpus_per_run: float = 0) -> Iterator[dict[str, Any]]:
    """Execute tasks (or groups) as Ray tasks, each asking for ``cpus_per_run`` CPUs and ``gpus_per_run``
    GPUs; yield results to the driver as they finish.

    Ray is joined (or started) when this is called, not when the first result is asked for.
    """
    started = start_ray(workers, address)
    return _ray_results(tasks, workers=workers, cpus_per_run=cpus_per_run, started=started, on_begin=on_begin,
                        gpus_per_run=gpus_per_run)


def _ray_results(tasks: list[dict[str, Any]], *, workers: int | None, cpus_per_run: int | None,
                 started: bool, on_begin: Any = None, gpus_per_run: float = 0) -> Iterator[dict[str, Any]]:
    import ray

    try:
        cpus = cpus_per_run or 1
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus_per_run, max_retries=0)(_ray_execute)
        window = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        pending = list(reversed(tasks))
        running: dict[Any, dict[str, Any]] = {}
        while pending or running:
            while pending and len(running) < 2 * window:
                task = pending.pop()
                running[remote.remote(task)] = task
                _begin(on_begin, task)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                task = running.pop(ref)
                try:
                    yield from ray.get(ref)
                except Exception as err:  # a worker that died: the run failed, the sweep goes on
                    yield from (_died(t, f"the Ray task failed: {type(err).__name__}: {err}")
                                for t in _unit_tasks(task))
    finally:
        if started:
            ray.shutdown()


def check_backend_options(backend: str, workers: int | None, address: str | None,
                          cpus_per_run: int | None) -> None:
    """Refuse backend settings a sweep could not run with (a dry run checks them too)."""
    problems = []
    if backend not in BACKENDS:
        problems.append(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or not 0 <= workers <= MAX_WORKERS):
        problems.append(f"--workers must be an integer between 0 (in this process) and {MAX_WORKERS}, "
                        f"got {workers!r}")
    if cpus_per_run is not None and (isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int)
                                     or not 1 <= cpus_per_run <= 4096):
        problems.append(f"--cpus-per-run must be an integer between 1 and 4096, got {cpus_per_run!r}")
    if address and backend != "ray":
        problems.append("--address only applies to --backend ray")
    if problems:
        raise ConfigError("; ".join(problems))
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise MissingDependencyError("ray", "ray")


def execute(tasks: list[dict[str, Any]], *, backend: str = "local", workers: int | None = None,
            address: str | None = None, cpus_per_run: int | None = None, on_begin: Any = None,
            device: str = "cpu", group: bool = True, gpus_per_run: float | None = None) -> Iterator[dict[str, Any]]:
    """Dispatch to a backend by name, on ``device``, runs grouped for batched attacks (``group``)
    (``on_begin(task)``: a run was handed to a worker)."""
    from gradleak.sweep.grouping import plan_units

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "local" and address:
        raise ConfigError("--address only applies to --backend ray")
    units, gpus = plan_units(tasks, device=device, backend=backend, group=group, gpus_per_run=gpus_per_run)
    if backend == "local":
        return run_local(units, workers=workers, cpus_per_run=cpus_per_run, on_begin=on_begin)
    return run_ray(units, workers=workers, address=address, cpus_per_run=cpus_per_run, on_begin=on_begin,
                   gpus_per_run=gpus)


def run_sweep(grid: Any, db: str | Path, *, backend: str = "local", workers: int | None = None,
              address: str | None = None, cpus_per_run: int | None = None, retry_failed: bool = False,
              on_start: Any = None, on_result: Any = None, on_begin: Any = None, device: str = "cpu",
              group: bool = True, gpus_per_run: float | None = None,
              busy_timeout: float = 300.0) -> dict[str, int]:
    """Run a parsed :class:`~gradleak.sweep.Grid` into the results database ``db``.

    Finished runs are skipped; failed ones too unless ``retry_failed``. Each result is committed
    in its own transaction as soon as it arrives, so a killed sweep resumes where it stopped.

    Args:
        grid: from :func:`gradleak.sweep.load_grid`.
        db: the SQLite file (created when missing).
        backend, workers, address, cpus_per_run, device, group, gpus_per_run: see :func:`execute`
            (``device`` defaults to the CPU here; the CLI's ``--device`` to ``auto``).
        retry_failed: run the stored failed runs again.
        on_start: ``fn(counts)`` called once with ``total``/``skipped``/``to_run`` before running.
        on_result: ``fn(result)`` called after each result is stored.
        on_begin: ``fn(task)`` called when a run starts on a worker.
        busy_timeout: seconds a write waits for a database another process holds locked; a
            finished run that still cannot be stored is kept in ``DB.unstored.jsonl`` (counted as
            ``unstored``) and stored by the next sweep on ``db``.

    Returns:
        ``{"total", "skipped", "done", "failed", "unstored"}`` for this invocation.

    Example:
        >>> from gradleak.sweep import parse_grid
        >>> g = parse_grid('[base]\\nattack="ig"\\ndataset="digits"\\nmodel="mlp"\\nsteps=2')
        >>> run_sweep(g, "/tmp/doc.sqlite")["total"]  # doctest: +SKIP
        1
    """
    from gradleak.sweep.grouping import sweep_device

    check_backend_options(backend, workers, address, cpus_per_run)
    sweep_device(device, backend)  # a device this machine lacks fails before anything is stored
    # Ray is joined before the database is opened: a cluster that cannot be reached leaves no file
    started = start_ray(workers, address) if backend == "ray" else False
    try:
        return _sweep(grid, db, backend=backend, workers=workers, address=address, cpus_per_run=cpus_per_run,
                      retry_failed=retry_failed, on_start=on_start, on_result=on_result, on_begin=on_begin,
                      busy_timeout=busy_timeout, device=device, group=group, gpus_per_run=gpus_per_run)
    finally:
        if started:
            import ray

            ray.shutdown()


def _sweep(grid: Any, db: str | Path, *, backend: str, workers: int | None, address: str | None,
           cpus_per_run: int | None, retry_failed: bool, on_start: Any, on_result: Any, on_begin: Any,
           busy_timeout: float, device: str, group: bool, gpus_per_run: float | None) -> dict[str, int]:
    from gradleak.sweep.grid import scenario_config
    from gradleak.sweep.store import Store
    from gradleak.sweep.storefile import keep_unstored, read_unstored, unstored_path

    with Store(db, busy_timeout=busy_timeout) as store:
        kept = read_unstored(db)  # finished runs an earlier sweep could not store: store them first
        for result in kept:
            store.record(result)
        if kept:
            unstored_path(db).unlink()
            log.warning("stored %d finished run(s) kept in %s by an earlier sweep", len(kept), unstored_path(db))
        planned = [(r.key, r.preset, scenario_config(r.scenario)) for r in grid.runs]
        sweep_id = store.start_sweep(grid.source, grid.text, backend, planned)
        status = store.statuses()
        skip = {"done"} if retry_failed else {"done", "failed"}
        tasks = [{"key": k, "preset": p, "config": c} for k, p, c in planned if status.get(k) not in skip]
        counts = {"total": len(planned), "skipped": len(planned) - len(tasks), "done": 0, "failed": 0,
                  "unstored": 0}
        log.info("sweep %s: %d planned, %d already stored, %d to run on %s", grid.source, len(planned),
                 counts["skipped"], len(tasks), backend)
        results = execute(tasks, backend=backend, workers=workers, address=address, cpus_per_run=cpus_per_run,
                          on_begin=on_begin, device=device, group=group,
                          gpus_per_run=gpus_per_run) if tasks else iter(())  # joins Ray now
        if on_start is not None:
            on_start({**counts, "to_run": len(tasks)})
        if tasks:
            for result in results:
                try:
                    store.record(result)
                except StoreBusyError as err:  # never drop a finished run: keep it beside the database
                    side = keep_unstored(db, result)
                    counts["unstored"] += 1
                    log.warning("%s; run %s kept in %s (the next sweep stores it)", err, result["key"], side)
                counts[result["status"]] += 1
                if on_result is not None:
                    on_result(result)
        try:
            store.finish_sweep(sweep_id, counts["done"], counts["failed"])
        except StoreBusyError as err:
            log.warning("%s; the sweep's end was not stamped", err)
    return counts
