"""Process and file helpers of ``bench/hostile_inputs.py``: folder snapshots, whether a Ray
cluster runs, the live processes of a session, waiting until a process computes.

Example:
    >>> import tempfile
    >>> snapshot(Path(tempfile.mkdtemp()))
    {}
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cli"))
from procs import cpu_seconds, session_alive  # noqa: E402 - shared with the signal tests

__all__ = ["ray_running", "session_alive", "snapshot", "wait_busy"]


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


def wait_busy(pid: int, seconds: float) -> None:
    """Wait until process ``pid`` has used ``seconds`` of CPU time (its imports are done, it computes)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and cpu_seconds(pid) < seconds:  # inf once it is gone
        time.sleep(0.2)
