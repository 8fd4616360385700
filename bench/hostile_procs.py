"""Process and file helpers of ``bench/hostile_inputs.py``: folder snapshots, whether a Ray
cluster runs, the live processes of a session, waiting until a process computes.

Example:
    >>> import tempfile
    >>> snapshot(Path(tempfile.mkdtemp()))
    {}
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` → the sha256 of its bytes ('dir' for folders)."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def ray_running() -> bool:
    try:
        from ray._private.services import find_gcs_addresses
    except ImportError:
        return False
    return bool(find_gcs_addresses())


def session_alive(pgid: int) -> list[int]:
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(stat.parent.name))
    return alive


def wait_busy(pid: int, seconds: float) -> None:
    """Wait until process ``pid`` has used ``seconds`` of CPU time (its imports are done, it computes)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        if (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") >= seconds:
            return
        time.sleep(0.2)
