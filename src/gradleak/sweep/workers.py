"""Sweep workers die with their driver: no process of a killed sweep is left behind.

A ``spawn`` worker blocks on a pipe its own process holds open, so it never notices that the
driver died; the ``multiprocessing`` resource tracker waits for every holder of its pipe,
workers included. Each worker therefore (1) asks Linux to SIGKILL it when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), (2) runs a watchdog thread that exits as soon as its parent
changes (any POSIX system), and (3) ignores Ctrl-C (blocked from its very start, see
:func:`sigint_blocked`), which the driver handles by terminating its workers itself. When the
last worker is gone, the resource tracker sees its pipe close and exits too.

Example:
    >>> import os
    >>> parent_alive(os.getppid())
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5


def parent_alive(parent: int) -> bool:
    """Whether this process's parent is still ``parent`` (an orphan is adopted by another)."""
    return os.getppid() == parent


def _pdeathsig() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _watchdog(parent: int) -> None:
    while parent_alive(parent):
        time.sleep(WATCH_SECONDS)
    os._exit(1)  # the driver is gone: nobody will ever read this worker's result


def init_worker(parent: int) -> None:
    """The process pool's initializer: tie this worker's life to the driver ``parent``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _pdeathsig()
    if not parent_alive(parent):  # the driver died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watchdog, args=(parent,), name="gradleak-watchdog", daemon=True).start()


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block Ctrl-C while workers are spawned: a child inherits the block (so a Ctrl-C during its
    start-up never shows a traceback), and the driver receives a pending Ctrl-C right after."""
    block = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if block:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if block:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def terminate_pool(pool: Any) -> None:
    """Kill a process pool's workers now (Ctrl-C or an error in the driver): no run outlives it."""
    processes = list(getattr(pool, "_processes", None) or {})
    procs = getattr(pool, "_processes", None) or {}
    for pid in processes:
        proc = procs.get(pid)
        with contextlib.suppress(Exception):
            proc.terminate() if proc is not None else os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    for pid in processes:
        proc = procs.get(pid)
        if proc is None:
            continue
        with contextlib.suppress(Exception):
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
