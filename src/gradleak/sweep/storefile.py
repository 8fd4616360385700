"""The results database on disk: whose file it is, creating it whole, waiting out locks, the side file.

* **Identity before touching.** A gradleak database carries ``PRAGMA application_id`` =
  :data:`APPLICATION_ID` and ``user_version`` = its schema version, read from the file's 100-byte
  header with a plain read. A file that is not SQLite, another program's SQLite file, or one
  written by a newer gradleak is refused and left byte-identical (never opened for writing, never
  switched to WAL). Databases written before the stamp (schema 1, no id) are recognised by their
  tables, read-only.
* **Created whole.** A new database is built under a temporary name and linked into place, so a
  half-created file never exists.
* **Busy retries.** A write that finds the database locked is retried with back-off for up to
  ``busy_timeout`` seconds; then :class:`~gradleak.core.errors.StoreBusyError`.
* **Nothing finished is dropped.** A result that cannot be stored goes to the side file
  ``DB.unstored.jsonl``; the next sweep on that database stores it first.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> db = Path(tempfile.mkdtemp()) / "r.sqlite"
    >>> identify(db)
    'new'
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gradleak.core.errors import DataError, StoreBusyError
from gradleak.core.jsonable import to_jsonable
from gradleak.experiment.outputs import STAGING, check_path

APPLICATION_ID = 0x676C6B31  # "glk1"
SQLITE_MAGIC = b"SQLite format 3\x00"
LEGACY_TABLES = {"runs", "planned", "sweeps"}
LEGACY_RUN_COLUMNS = {"key", "preset", "status", "config", "detail", "error", "image", "attempts", "finished"}
T = TypeVar("T")


def identify(path: Path, schema_version: int = 1) -> str:
    """``"new"`` (no file), ``"ours"`` (stamped) or ``"legacy"`` (gradleak schema 1, unstamped);
    anything else raises :class:`DataError` without changing a byte of the file."""
    path = check_path(path, "results database")
    if not path.exists() and not path.is_symlink():
        return "new"
    if path.is_dir():
        raise DataError(f"results database {path} is a folder; pass a file name, e.g. {path / 'results.sqlite'}")
    if not path.is_file():
        raise DataError(f"results database {path} is not a regular file; choose another --db")
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as err:
        raise DataError(f"cannot read the results database {path}: {err.strerror or err}") from None
    refuse = "gradleak leaves it untouched; choose another --db (a new file name creates a new database)"
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        what = "an empty file" if not header else "not a SQLite file"
        raise DataError(f"{path} is not a gradleak results database ({what}); {refuse}")
    user_version = int.from_bytes(header[60:64], "big")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id == APPLICATION_ID:
        if user_version > schema_version:
            raise DataError(f"{path} was written by a newer gradleak (results schema {user_version}; this one "
                            f"reads up to {schema_version}); upgrade gradleak, or choose another --db")
        return "ours"
    if app_id == 0 and user_version == 1 and _legacy_tables(path):
        return "legacy"
    raise DataError(f"{path} is a SQLite database of another program, not a gradleak results database "
                    f"(application id {app_id:#x}, version {user_version}); {refuse}")


def _legacy_tables(path: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=5)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return LEGACY_TABLES <= tables and LEGACY_RUN_COLUMNS <= columns


def create(path: Path, setup: Callable[[sqlite3.Connection], None]) -> None:
    """Build a new database with ``setup`` under a temporary name, then link it into place."""
    folder = path.absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the folder of the results database {path}: {err.strerror or err}") from None
    tmp = folder / f"{STAGING}{secrets.token_hex(4)}.sqlite"
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            setup(conn)
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        os.link(tmp, path)  # fails if another sweep created it meanwhile: that one is kept
    except FileExistsError:
        pass
    except (OSError, sqlite3.Error) as err:
        raise DataError(f"cannot create the results database {path}: {err}; choose a folder you can "
                        "write") from None
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def retry_busy(fn: Callable[[], T], *, path: Path, busy_timeout: float, what: str) -> T:
    """Run ``fn``; while the database is locked by another process, retry with back-off."""
    deadline = time.monotonic() + busy_timeout
    wait = 0.05
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as err:
            text = str(err).lower()
            if "locked" not in text and "busy" not in text:
                raise
            if time.monotonic() + wait > deadline:
                raise StoreBusyError(
                    f"the results database {path} stayed locked by another process for {busy_timeout:.0f} s "
                    f"({what}); close the program holding it, or wait, and run again") from None
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


def unstored_path(db: str | Path) -> Path:
    """The side file that keeps finished runs a locked database could not take."""
    return Path(f"{db}.unstored.jsonl")


def keep_unstored(db: str | Path, result: dict[str, Any]) -> Path:
    """Append ``result`` to the side file (flushed to disk) and return its path."""
    side = unstored_path(db)
    row = dict(result)
    if isinstance(row.get("image"), bytes):
        row["image"] = {"base64": base64.b64encode(row["image"]).decode()}
    with open(side, "a", encoding="utf-8") as f:
        f.write(json.dumps(to_jsonable(row), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return side


def read_unstored(db: str | Path) -> list[dict[str, Any]]:
    """Results kept in the side file (a truncated last line, from a crash while writing it, is skipped)."""
    side = unstored_path(db)
    if not side.is_file():
        return []
    rows = []
    for line in side.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and {"key", "status", "config"} <= set(row):
            image = row.get("image")
            if isinstance(image, dict) and "base64" in image:
                row["image"] = base64.b64decode(image["base64"])
            rows.append(row)
    return rows
