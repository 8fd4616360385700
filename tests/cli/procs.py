"""Linux ``/proc`` readers shared by the signal tests and ``bench/hostile_inputs.py``: the live
processes of a session and the CPU time one has used.

Example (no process has group -1; a gone process has used ``inf`` seconds, so waits end):
    >>> session_alive(-1), cpu_seconds(-1)
    ([], inf)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces and ``)``)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def session_alive(sid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``sid`` (a process started with
    ``start_new_session=True`` leads a group of its own pid)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = _stat(stat.parent.name)
            if int(fields[2]) == sid and fields[0] != "Z":
                alive.append(int(stat.parent.name))
    return alive


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (``inf`` once it is gone)."""
    try:
        fields = _stat(pid)
    except OSError:
        return float("inf")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
