"""The executor's worker processes: spawned, long-lived, killed when an attack goes over budget.

A worker imports torch once, says ``ready``, then answers jobs sent as ``torch.save`` bytes of
``(function, payload)`` with ``("ok", result)`` or ``("failed", reason)``; empty bytes stop it.
Starting one takes the time to import torch (seconds), so the pool starts them early.

Example:
    >>> proc = WorkerProcess(threads=1)                     # doctest: +SKIP
    >>> proc.stop()                                         # doctest: +SKIP
"""

from __future__ import annotations

import io
import multiprocessing
from typing import Any


class WorkerProcess:
    """A spawned worker process and its pipe (``ready`` once it has imported torch)."""

    def __init__(self, threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child, threads), daemon=True,
                                   name="gradleak-audit-worker")
        self.process.start()
        child.close()
        self.ready, self.job = False, None

    def stop(self, grace: float = 1.0) -> None:
        """Terminate (then kill) the process and close the pipe."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(grace)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(grace)
        self.conn.close()


def worker_main(conn: Any, threads: int) -> None:  # pragma: no cover - runs in the spawned process
    import torch

    torch.set_num_threads(max(1, threads))
    conn.send_bytes(b"ready")
    while True:
        try:
            blob = conn.recv_bytes()
        except EOFError:
            return
        if not blob:
            return
        try:
            fn, payload = torch.load(io.BytesIO(blob), weights_only=False)
            answer: tuple[str, Any] = ("ok", fn(payload))
        except BaseException as err:  # the job's failure is the answer
            answer = ("failed", f"{type(err).__name__}: {err}")
        buffer = io.BytesIO()
        try:
            torch.save(answer, buffer)
        except Exception as err:
            buffer = io.BytesIO()
            torch.save(("failed", f"the result cannot be sent back: {err}"), buffer)
        conn.send_bytes(buffer.getvalue())
