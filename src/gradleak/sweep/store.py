"""Sweep results in one SQLite file: one row per run, one transaction per finished run.

The database runs in WAL mode with ``synchronous=FULL``, so a report can read while a sweep
writes, and a committed run survives the sweep being killed. Before anything touches a file, its
identity is checked (:mod:`gradleak.sweep.storefile`): another program's SQLite file or a newer
gradleak's is refused untouched; a locked database is waited for with back-off. Tables:

- ``runs``: one row per finished run (``status`` ``done`` or ``failed``), keyed by the scenario
  hash: the resolved config (JSON), every metric (columns and a JSON blob with per-image scores),
  seconds, versions, seed, error, and the truth-over-reconstruction PNG bytes.
  The six metrics are columns; ``detail`` (JSON) holds per-image scores, the Hungarian matching,
  the final loss and the attack's info (or the traceback of a failed run).
- ``planned``: the runs each sweep asked for (so a report can say how many of the latest
  sweep's runs are still pending).
- ``sweeps``: one row per ``gradleak sweep`` invocation (grid text, backend, counts).

Only the sweep driver writes; workers return results to it.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> store = Store(Path(tempfile.mkdtemp()) / "r.sqlite")
    >>> store.record({"key": "k1", "status": "failed", "config": {"seed": 0}, "error": "boom"})
    >>> store.statuses()
    {'k1': 'failed'}
    >>> store.close()
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from gradleak.core.errors import DataError
from gradleak.core.jsonable import to_jsonable
from gradleak.sweep.storefile import APPLICATION_ID, create, identify, retry_busy

METRICS = ("mse", "psnr", "ssim", "lpips", "label_accuracy", "exact_fraction")
SCHEMA_VERSION = 1
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    preset TEXT,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    attack TEXT, dataset TEXT, model TEXT, batch_size INTEGER, protocol TEXT,
    local_steps INTEGER, labels TEXT, defenses TEXT, seed INTEGER,
    {", ".join(f"{m} REAL" for m in METRICS)},
    seconds REAL, wall_seconds REAL,
    config TEXT NOT NULL, detail TEXT, versions TEXT, error TEXT, image BLOB,
    attempts INTEGER NOT NULL DEFAULT 1, host TEXT, finished TEXT
);
CREATE TABLE IF NOT EXISTS planned (
    key TEXT NOT NULL, preset TEXT, config TEXT NOT NULL, sweep_id INTEGER NOT NULL,
    PRIMARY KEY (sweep_id, key)
);
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT, finished TEXT, source TEXT, grid TEXT,
    backend TEXT, planned INTEGER, done INTEGER, failed INTEGER
);
PRAGMA user_version = {SCHEMA_VERSION};
"""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class Store:
    """A results database (created when missing).

    Args:
        path: the SQLite file.
        readonly: open for reading only (a report on a database a sweep may still be writing).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, busy_timeout: float = 300.0) -> None:
        self.path = Path(path)
        self.readonly, self.busy_timeout = readonly, float(busy_timeout)
        if readonly and not self.path.exists():
            raise DataError(f"results database {self.path} does not exist; run 'gradleak sweep' first")
        state = identify(self.path, SCHEMA_VERSION)  # a foreign or newer file is refused untouched
        try:
            if readonly:
                self.conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, timeout=30)
            else:
                if state == "new":
                    create(self.path, lambda conn: conn.executescript(_SCHEMA))
                self.conn = sqlite3.connect(self.path, timeout=min(5.0, self.busy_timeout), isolation_level=None)
                self._retry(lambda: self.conn.execute("PRAGMA journal_mode=WAL"), "opening it")
                self.conn.execute("PRAGMA synchronous=FULL")
                if state == "legacy":  # written by gradleak before the identity stamp: stamp it now
                    self._retry(lambda: self.conn.executescript(
                        f"PRAGMA application_id = {APPLICATION_ID};" + _SCHEMA), "stamping it")
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("SELECT count(*) FROM runs").fetchone()
        except sqlite3.DatabaseError as err:
            raise DataError(f"{self.path} is not a readable gradleak results database ({err}); "
                            "pass the --db file a sweep wrote") from None

    def _retry(self, fn: Any, what: str) -> Any:
        return retry_busy(fn, path=self.path, busy_timeout=self.busy_timeout, what=what)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run ``sql`` for every row inside one transaction (retried while another process holds a lock)."""
        self._transaction(lambda: self.conn.executemany(sql, rows), "writing a result")

    def _transaction(self, body: Any, what: str) -> Any:
        def attempt() -> Any:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                out = body()
                self.conn.execute("COMMIT")
                return out
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

        return self._retry(attempt, what)

    def start_sweep(self, source: str, grid_text: str, backend: str,
                    planned: list[tuple[str, str, dict[str, Any]]]) -> int:
        """Record a sweep and its planned runs ``(key, preset, config)``; return the sweep id."""
        def body() -> int:
            cur = self.conn.execute(
                "INSERT INTO sweeps (started, source, grid, backend, planned) VALUES (?, ?, ?, ?, ?)",
                (_now(), source, grid_text, backend, len(planned)))
            sweep_id = int(cur.lastrowid or 0)
            self.conn.executemany(
                "INSERT INTO planned (key, preset, config, sweep_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [(k, p, json.dumps(to_jsonable(c), sort_keys=True), sweep_id) for k, p, c in planned])
            return sweep_id

        return int(self._transaction(body, "starting the sweep"))

    def finish_sweep(self, sweep_id: int, done: int, failed: int) -> None:
        """Stamp a sweep's end and counts."""
        self._write("UPDATE sweeps SET finished = ?, done = ?, failed = ? WHERE id = ?",
                    [(_now(), done, failed, sweep_id)])

    def statuses(self) -> dict[str, str]:
        """``{key: status}`` of every stored run."""
        return {r["key"]: r["status"] for r in self.conn.execute("SELECT key, status FROM runs")}

    def record(self, result: dict[str, Any]) -> None:
        """Store one finished run in its own transaction (a failed run replaced on retry).

        ``result`` holds ``key``, ``status``, ``config`` and optionally ``preset``, ``metrics``
        (the six scores, as columns), ``detail`` (per-image scores etc.), ``seconds``, ``wall_seconds``,
        ``versions``, ``error``, ``image`` (PNG bytes) and ``host``.
        """
        cfg = result["config"]
        metrics = result.get("metrics") or {}
        detail = result.get("detail") or {}
        row = (
            result["key"], result.get("preset"), result["status"], cfg.get("attack"), cfg.get("dataset"),
            cfg.get("model"), cfg.get("batch_size"), cfg.get("protocol"), cfg.get("local_steps"),
            cfg.get("labels"), json.dumps(list(cfg.get("defenses", []))), cfg.get("seed"),
            *(_float(metrics.get(m)) for m in METRICS),
            _float(result.get("seconds")), _float(result.get("wall_seconds")),
            json.dumps(to_jsonable(cfg), sort_keys=True), json.dumps(to_jsonable(detail), sort_keys=True),
            json.dumps(result.get("versions") or {}, sort_keys=True), result.get("error"),
            result.get("image"), result.get("host"), _now(),
        )
        columns = ("key, preset, status, attack, dataset, model, batch_size, protocol, local_steps, "
                   f"labels, defenses, seed, {', '.join(METRICS)}, seconds, wall_seconds, config, "
                   "detail, versions, error, image, host, finished")
        self._write(
            f"INSERT INTO runs ({columns}) VALUES ({', '.join('?' * len(row))}) "
            f"ON CONFLICT(key) DO UPDATE SET "
            + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in columns.split(",")[1:])
            + ", attempts = runs.attempts + 1 WHERE runs.status = 'failed'",
            [row])

    def runs(self, status: str | None = None, *, with_images: bool = False) -> list[dict[str, Any]]:
        """Stored runs as dicts (``config``/``metrics``/``versions`` parsed; images only if asked)."""
        cols = "*" if with_images else "key, preset, status, " + ", ".join(
            c for c in ("attack", "dataset", "model", "batch_size", "protocol", "local_steps", "labels",
                        "defenses", "seed", *METRICS, "seconds", "wall_seconds", "config", "detail",
                        "versions", "error", "attempts", "host", "finished"))
        sql = f"SELECT {cols} FROM runs" + (" WHERE status = ?" if status else "") + " ORDER BY finished, key"
        out = []
        for r in self.conn.execute(sql, (status,) if status else ()):
            row = dict(r)
            for name in ("config", "detail", "versions", "defenses"):
                row[name] = json.loads(row[name]) if row.get(name) else ({} if name != "defenses" else [])
            out.append(row)
        return out

    def image(self, key: str) -> bytes | None:
        """The PNG (truth above, reconstruction below) of one run, if stored."""
        row = self.conn.execute("SELECT image FROM runs WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["image"]

    def counts(self) -> dict[str, int]:
        """``done`` and ``failed`` runs stored; ``planned`` by the latest sweep and ``pending``
        (planned by it but not finished)."""
        done = self.conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
        failed = self.conn.execute("SELECT count(*) FROM runs WHERE status = 'failed'").fetchone()[0]
        latest = "(SELECT max(id) FROM sweeps)"
        planned = self.conn.execute(f"SELECT count(*) FROM planned WHERE sweep_id = {latest}").fetchone()[0]
        pending = self.conn.execute(f"SELECT count(*) FROM planned WHERE sweep_id = {latest} "
                                    "AND key NOT IN (SELECT key FROM runs)").fetchone()[0]
        return {"done": done, "failed": failed, "planned": planned, "pending": pending}
