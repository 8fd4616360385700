"""The SQLite results store: WAL, one row per run, failed runs replaced only on retry, concurrent reads."""

from __future__ import annotations

import sqlite3

import pytest

from gradleak.core.errors import DataError
from gradleak.sweep.store import METRICS, Store


def _result(key: str, status: str = "done", psnr: float = 20.0, **extra):
    metrics = {m: 0.5 for m in METRICS} | {"psnr": psnr, "lpips": None}
    return {"key": key, "preset": "p", "status": status, "config": {"attack": "ig", "batch_size": 2,
            "seed": 3, "defenses": ["noise:sigma=0.1"]}, "metrics": metrics if status == "done" else None,
            "seconds": 1.5, "versions": {"torch": "x"}, "image": b"\x89PNG-fake", "detail": {"per_image": [1.0]},
            **extra}


def test_schema_wal_and_roundtrip(tmp_path):
    db = tmp_path / "r.sqlite"
    with Store(db) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.record(_result("a", psnr=float("inf")))
        store.record(_result("b", "failed", error="ValueError: boom"))
        rows = {r["key"]: r for r in store.runs()}
    assert set(rows) == {"a", "b"}
    a = rows["a"]
    assert a["psnr"] == float("inf") and a["lpips"] is None and a["seed"] == 3 and a["batch_size"] == 2
    assert a["defenses"] == ["noise:sigma=0.1"] and a["config"]["attack"] == "ig"
    assert a["versions"] == {"torch": "x"} and a["detail"] == {"per_image": [1.0]}
    assert rows["b"]["error"] == "ValueError: boom" and rows["b"]["psnr"] is None
    with Store(db, readonly=True) as store:
        assert store.image("a") == b"\x89PNG-fake"
        assert store.image("missing") is None


def test_done_rows_never_duplicated_or_overwritten_failed_replaced(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.record(_result("a", psnr=10.0))
        store.record(_result("a", psnr=99.0))  # a second result for a finished run is ignored
        store.record(_result("b", "failed", error="first"))
        store.record(_result("b", psnr=30.0))  # a retried failure is replaced
        rows = {r["key"]: r for r in store.runs()}
        count = store.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert count == 2
    assert rows["a"]["psnr"] == 10.0 and rows["a"]["attempts"] == 1
    assert rows["b"]["status"] == "done" and rows["b"]["attempts"] == 2 and rows["b"]["error"] is None


def test_counts_with_planned_runs(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        sweep = store.start_sweep("g.toml", "[base]", "local", [("a", "p", {}), ("b", "p", {}), ("c", "p", {})])
        store.record(_result("a"))
        store.record(_result("b", "failed", error="x"))
        store.finish_sweep(sweep, 1, 1)
        assert store.counts() == {"done": 1, "failed": 1, "planned": 3, "pending": 1}
        assert store.statuses() == {"a": "done", "b": "failed"}
        store.start_sweep("g2.toml", "[base]", "local", [("a", "p", {}), ("d", "p", {})])  # a new grid
        assert store.counts() == {"done": 1, "failed": 1, "planned": 2, "pending": 1}


def test_reader_sees_committed_rows_while_a_write_is_open(tmp_path):
    db = tmp_path / "r.sqlite"
    writer = Store(db)
    writer.record(_result("a"))
    writer.conn.execute("BEGIN IMMEDIATE")
    writer.conn.execute("INSERT INTO runs (key, status, config) VALUES ('half', 'done', '{}')")
    with Store(db, readonly=True) as reader:  # the sweep is mid-transaction: the reader is not blocked
        assert [r["key"] for r in reader.runs()] == ["a"]
        with pytest.raises(sqlite3.OperationalError):
            reader.conn.execute("DELETE FROM runs")
    writer.conn.execute("ROLLBACK")
    writer.close()


def test_bad_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Store(tmp_path / "missing.sqlite", readonly=True)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a gradleak results database"):
        Store(junk)
