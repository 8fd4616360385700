"""A bounded pool for the audit's attacks: budgets per attack and per round, nothing left unrecorded.

:class:`AuditExecutor` runs jobs (one attack on one client update) on ``workers`` workers and
reports every job exactly once through ``on_outcome`` with a status:

* ``ok`` / ``failed`` — the job returned / raised;
* ``timeout`` — it ran past the per-attack budget (``attack_seconds``, counted from when a worker
  took it) or past its round's budget (``round_seconds``, counted from when the round's jobs were
  submitted);
* ``cancelled`` — it never ran: the round's budget was spent before a worker was free, or the
  executor was shut down with ``cancel=True`` (a stopped run).

Two pools:

* ``process`` — long-lived worker processes started with ``spawn``. A job over budget is
  **terminated** (its process is killed and a fresh one started), so a budget is a hard bound.
  Jobs and results travel as ``torch.save`` bytes: the job's function, attack and model must be
  picklable (module-level classes).
* ``thread`` — one thread per running job. A Python thread cannot be killed: a job over budget is
  recorded as ``timeout`` at once and its result discarded, but its thread runs on and keeps its
  worker slot until the attack returns (pending jobs then wait, or are cancelled at their round's
  budget, with that reason). Give attacks their own budget too (``AuditStrategy`` passes
  ``attack_seconds`` to attacks with ``max_seconds``, e.g. spear).

``wait_round(r)`` blocks until round ``r`` is resolved or its budget is spent; nothing else ever
blocks the caller, so training waits on the audit only when it asks to. A dispatcher thread
enforces the deadlines; ``on_outcome`` and ``on_round`` run on it (or on the caller in
``shutdown``), never while the executor's lock is held.

Example:
    >>> seen = []
    >>> ex = AuditExecutor(abs, on_outcome=lambda job, out: seen.append((job.key, out.status, out.result)))
    >>> ex.submit(1, [((1, 7), -3)])
    >>> ex.wait_round(1)
    >>> ex.shutdown()
    >>> seen
    [((1, 7), 'ok', 3)]
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gradleak.core.errors import ConfigError
from gradleak.integrations.flower.workerproc import WorkerProcess

POOLS = ("thread", "process")
TICK = 0.05


@dataclass
class Outcome:
    """What became of a job: status, the job function's result, why (for non-``ok``), seconds it ran."""

    status: str
    result: Any = None
    reason: str = ""
    seconds: float = 0.0


@dataclass
class Job:
    """One attack job: ``key`` (e.g. ``(round, node)``), its round and payload, and its timing."""

    key: Any
    round: int
    payload: Any
    submitted: float
    started: float | None = None
    worker: Any = None
    holder: dict[str, Any] = field(default_factory=dict)


class AuditExecutor:
    """Runs ``fn(payload)`` jobs on a bounded pool with per-attack and per-round budgets.

    Args:
        fn: the job function (module-level and picklable for the process pool).
        pool: ``thread`` or ``process``.
        workers: jobs running at once.
        attack_seconds: per-job budget from when a worker takes it (``None``: none).
        round_seconds: per-round budget from when the round is submitted (``None``: none).
        on_outcome: ``on_outcome(job, outcome)``, once per job.
        on_round: ``on_round(round)``, once the last job of a round is resolved.
        threads_per_worker: torch threads in each worker process.
    """

    def __init__(self, fn: Callable[[Any], Any], *, pool: str = "thread", workers: int = 1,
                 attack_seconds: float | None = None, round_seconds: float | None = None,
                 on_outcome: Callable[[Job, Outcome], None] | None = None,
                 on_round: Callable[[int], None] | None = None, threads_per_worker: int = 1) -> None:
        problems = []
        if pool not in POOLS:
            problems.append(f"pool must be one of {POOLS}, got {pool!r}")
        if not isinstance(workers, int) or workers < 1:
            problems.append(f"workers must be an integer >= 1, got {workers!r}")
        for name, value in (("attack_seconds", attack_seconds), ("round_seconds", round_seconds)):
            if value is not None and not value > 0:
                problems.append(f"{name} must be a positive number of seconds or None, got {value!r}")
        if problems:
            raise ConfigError("audit executor: " + "; ".join(problems))
        self.fn, self.pool, self.workers = fn, pool, workers
        self.attack_seconds, self.round_seconds = attack_seconds, round_seconds
        self.on_outcome, self.on_round, self.threads = on_outcome, on_round, threads_per_worker
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []
        self._abandoned: list[threading.Thread] = []
        self._unresolved: dict[int, int] = {}
        self._deadline: dict[int, float] = {}
        self._procs: list[WorkerProcess] = []
        self._closed = self._cancel = False
        self._broken = ""
        self._starts = 0
        if pool == "process":
            self._fill_processes()  # start the workers now: importing torch takes seconds
        self._thread = threading.Thread(target=self._loop, name="gradleak-audit-dispatch", daemon=True)
        self._thread.start()

    # -- the caller's side ----------------------------------------------------------------------
    def submit(self, server_round: int, jobs: Iterable[tuple[Any, Any]]) -> None:
        """Queue ``(key, payload)`` jobs of ``server_round`` (its round budget starts now)."""
        now = time.monotonic()
        new = [Job(key, server_round, payload, now) for key, payload in jobs]
        if not new:
            return
        with self._cond:
            if self._closed:
                raise RuntimeError("the audit executor is shut down")
            if self.round_seconds is not None:
                self._deadline.setdefault(server_round, now + self.round_seconds)
            self._unresolved[server_round] = self._unresolved.get(server_round, 0) + len(new)
            self._pending.extend(new)
            self._cond.notify_all()

    def ready(self, timeout: float | None = None) -> bool:
        """Block until every worker process has started (process pool; at most ``timeout`` s); say if they have."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.pool == "process" and not self._broken and not all(p.ready for p in self._procs):
                if end is not None and time.monotonic() > end:
                    return False
                self._cond.wait(TICK)
            return not self._broken

    def backlog(self) -> int:
        """Jobs submitted and not yet resolved."""
        with self._cond:
            return sum(self._unresolved.values())

    def wait_round(self, server_round: int) -> None:
        """Block until every job of ``server_round`` is resolved, or its round budget is spent."""
        with self._cond:
            while self._unresolved.get(server_round, 0) > 0:
                deadline = self._deadline.get(server_round)
                if deadline is not None and time.monotonic() > deadline + 2 * TICK:
                    return  # the dispatcher resolves the rest; the caller goes on
                self._cond.wait(TICK)

    def shutdown(self, *, cancel: bool = False) -> None:
        """Finish (within budgets) or, with ``cancel``, cancel/terminate every job; then stop the workers.

        Every job still unresolved is reported before this returns. Safe to call more than once.
        """
        with self._cond:
            self._closed, self._cancel = True, self._cancel or cancel
            self._cond.notify_all()
        if threading.current_thread() is self._thread:
            return  # called from a callback: the dispatcher finishes on its own
        self._thread.join()
        for proc in self._procs:
            if proc.job is None and proc.process.is_alive():
                try:
                    proc.conn.send_bytes(b"")
                    proc.process.join(1.0)
                except OSError:
                    pass
            proc.stop()
        self._procs = []

    # -- the dispatcher: the only thread that touches running jobs and worker processes ---------
    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(TICK)
                stop = self._closed and self._cancel
                resolved = self._expire_pending_locked(time.monotonic(), stop)
            resolved += self._cancel_running() if stop else self._poll_running(time.monotonic())
            if self.pool == "process":
                self._fill_processes()
            resolved += self._dispatch()
            self._deliver(resolved)
            with self._cond:
                if self._closed and not self._pending and not self._running:
                    self._cond.notify_all()
                    return

    def _expire_pending_locked(self, now: float, stop: bool) -> list[tuple[Job, Outcome]]:
        resolved: list[tuple[Job, Outcome]] = []
        for job in list(self._pending):
            deadline = self._deadline.get(job.round)
            if stop:
                outcome = Outcome("cancelled", reason="the run stopped before this attack started")
            elif self._broken:
                outcome = Outcome("failed", reason=self._broken)
            elif deadline is not None and now > deadline:
                outcome = Outcome("cancelled", reason=f"the round's audit budget ({self.round_seconds:g} s) was "
                                                      f"spent before a worker was free{self._busy_note()}")
            else:
                continue
            self._pending.remove(job)
            resolved.append((job, outcome))
        return resolved

    def _cancel_running(self) -> list[tuple[Job, Outcome]]:
        now, resolved = time.monotonic(), []
        for job in self._running:
            ran = now - (job.started or now)
            resolved.append((job, Outcome("cancelled", reason=f"the run stopped while this attack ran ({ran:.1f} s)"
                                          + self._stop_job(job), seconds=ran)))
        self._running = []
        return resolved

    def _poll_running(self, now: float) -> list[tuple[Job, Outcome]]:
        resolved = []
        for job in list(self._running):
            outcome = self._poll(job, now)
            if outcome is not None:
                self._running.remove(job)
                resolved.append((job, outcome))
        return resolved

    def _dispatch(self) -> list[tuple[Job, Outcome]]:
        resolved = []
        while self._free_slot():
            with self._cond:
                if not self._pending or (self._closed and self._cancel):
                    break
                job = self._pending.popleft()
            job.started = time.monotonic()
            failure = self._start(job)
            if failure is not None:
                resolved.append((job, failure))
            else:
                self._running.append(job)
        return resolved

    def _poll(self, job: Job, now: float) -> Outcome | None:
        ran = now - (job.started or now)
        if self.pool == "thread" and "answer" in job.holder:
            status, value = job.holder["answer"]
            return Outcome(status, value if status == "ok" else None, "" if status == "ok" else value, ran)
        if self.pool == "process":
            proc: WorkerProcess = job.worker
            if proc.conn.poll():
                return self._receive(proc, ran)
            if not proc.process.is_alive():
                self._retire(proc)
                return Outcome("failed", reason=f"the worker process died (exit code {proc.process.exitcode})",
                               seconds=ran)
        over = self._over_budget(job, now)
        if over:
            return Outcome("timeout", reason=over + self._stop_job(job), seconds=ran)
        return None

    def _over_budget(self, job: Job, now: float) -> str:
        if self.attack_seconds is not None and now - (job.started or now) > self.attack_seconds:
            return f"over the per-attack budget of {self.attack_seconds:g} s"
        deadline = self._deadline.get(job.round)
        if deadline is not None and now > deadline:
            return f"still running when the round's audit budget ({self.round_seconds:g} s) was spent"
        return ""

    def _stop_job(self, job: Job) -> str:
        """Stop a running job; say how."""
        if self.pool == "process":
            self._retire(job.worker)
            return "; its worker process was terminated"
        self._abandoned.append(job.worker)
        return "; its thread cannot be killed and runs on (its result will be discarded)"

    def _retire(self, proc: WorkerProcess) -> None:
        proc.stop()
        if proc in self._procs:
            self._procs.remove(proc)

    def _receive(self, proc: WorkerProcess, ran: float) -> Outcome:
        import torch

        proc.job = None
        try:
            status, value = torch.load(io.BytesIO(proc.conn.recv_bytes()), weights_only=False)
        except Exception as err:
            self._retire(proc)
            return Outcome("failed", reason=f"the worker's answer could not be read: {err}", seconds=ran)
        return Outcome(status, value if status == "ok" else None, "" if status == "ok" else value, ran)

    def _free_slot(self) -> bool:
        if self.pool == "process":
            return any(p.ready and p.job is None for p in self._procs)
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        return len(self._running) + len(self._abandoned) < self.workers

    def _busy_note(self) -> str:
        alive = [t for t in self._abandoned if t.is_alive()]
        busy = len(self._running) + len(alive) if self.pool == "thread" else sum(p.job is not None for p in self._procs)
        note = f" ({busy} of {self.workers} worker(s) busy"
        if alive:
            note += (f"; {len(alive)} of them still run attacks that went over budget: threads cannot be killed, "
                     "use pool='process' or give the attack a budget")
        elif self.pool == "process" and not all(p.ready for p in self._procs):
            note += "; worker processes still starting"
        return note + ")"

    def _start(self, job: Job) -> Outcome | None:
        if self.pool == "process":
            import torch

            proc = next(p for p in self._procs if p.ready and p.job is None)
            buffer = io.BytesIO()
            try:
                torch.save((self.fn, job.payload), buffer)
            except Exception as err:
                return Outcome("failed", reason=f"this job cannot be sent to a worker process ({err}); use "
                                                "pool='thread' or picklable, module-level classes")
            proc.job, job.worker = job, proc
            proc.conn.send_bytes(buffer.getvalue())
            return None

        def target() -> None:
            try:
                answer: tuple[str, Any] = ("ok", self.fn(job.payload))
            except BaseException as err:  # the job's failure is the answer
                answer = ("failed", f"{type(err).__name__}: {err}")
            job.holder["answer"] = answer
            with self._cond:
                self._cond.notify_all()

        job.worker = threading.Thread(target=target, name=f"gradleak-audit-{job.key}", daemon=True)
        job.worker.start()
        return None

    def _fill_processes(self) -> None:
        for proc in self._procs:
            if not proc.ready and proc.conn.poll():
                try:
                    proc.ready = proc.conn.recv_bytes() == b"ready"
                except (EOFError, OSError):
                    proc.ready = False
                if proc.ready:
                    with self._cond:
                        self._cond.notify_all()
            if not proc.ready and not proc.process.is_alive():
                self._broken = (f"the audit's worker process could not start (exit code {proc.process.exitcode}); "
                                "use pool='thread'")
        self._procs = [p for p in self._procs if p.ready or p.process.is_alive()]
        while not self._broken and (self._pending or not self._closed) and len(self._procs) < self.workers:
            self._starts += 1
            self._procs.append(WorkerProcess(self.threads))

    def _deliver(self, resolved: list[tuple[Job, Outcome]]) -> None:
        finished: list[int] = []
        for job, outcome in resolved:
            if self.on_outcome is not None:
                try:
                    self.on_outcome(job, outcome)
                except Exception:  # a failing callback must not stop the dispatcher
                    pass
            with self._cond:
                self._unresolved[job.round] -= 1
                if self._unresolved[job.round] == 0:
                    del self._unresolved[job.round]
                    finished.append(job.round)
                self._cond.notify_all()
        for server_round in finished:
            if self.on_round is not None:
                try:
                    self.on_round(server_round)
                except Exception:
                    pass

    @property
    def process_ids(self) -> list[int]:
        """The worker processes' ids (process pool)."""
        return [p.process.pid for p in self._procs if p.process.pid is not None]

    def __repr__(self) -> str:
        return (f"AuditExecutor(pool={self.pool!r}, workers={self.workers}, attack_seconds={self.attack_seconds}, "
                f"round_seconds={self.round_seconds}, pid={os.getpid()})")
