"""The SQLite results store: WAL, one row per run, failed runs replaced only on retry, concurrent reads."""

from __future__ import annotations

import sqlite3

import pytest

from gradleak.core.errors import DataError, StoreBusyError
from gradleak.sweep.store import METRICS, Store
from gradleak.sweep.storefile import APPLICATION_ID, read_unstored, unstored_path


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


def _user_db(path, *, table="runs", user_version=0):
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute(f"INSERT INTO {table} (name) VALUES ('alice')")
    conn.execute(f"PRAGMA user_version = {user_version}")
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize(("table", "user_version"), [("runs", 0), ("people", 0), ("runs", 1)])
def test_a_users_sqlite_file_is_refused_byte_identical(tmp_path, capsys, table, user_version):
    from gradleak.cli import main

    db = tmp_path / "mine.sqlite"
    before = _user_db(db, table=table, user_version=user_version)
    for readonly in (False, True):
        with pytest.raises(DataError, match="not a gradleak results database.*untouched"):
            Store(db, readonly=readonly)
    grid = tmp_path / "g.toml"
    grid.write_text('[base]\nattack = "ig"\ndataset = "digits"\nmodel = "mlp"\nsteps = 2\n')
    for argv in (["sweep", str(grid), "--db", str(db), "--workers", "0", "--no-progress"],
                 ["sweep", str(grid), "--db", str(db), "--dry-run"], ["report", str(db), "--format", "md"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a gradleak results database" in err
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.toml", "mine.sqlite"]  # no -wal, no -journal


def test_newer_schema_refused_and_legacy_database_adopted(tmp_path):
    newer = tmp_path / "newer.sqlite"
    with Store(newer) as store:
        store.conn.execute("PRAGMA user_version = 99")
    before = newer.read_bytes()
    with pytest.raises(DataError, match="newer gradleak"):
        Store(newer)
    assert newer.read_bytes() == before
    legacy = tmp_path / "legacy.sqlite"  # what gradleak wrote before the identity stamp
    with Store(legacy) as store:
        store.record(_result("a"))
        store.conn.execute("PRAGMA application_id = 0")
    with Store(legacy) as store:
        assert store.statuses() == {"a": "done"}
        assert store.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_busy_database_retried_then_result_kept_beside_it_and_stored_next_time(tmp_path, caplog):
    from gradleak.sweep import parse_grid
    from gradleak.sweep.backends import run_sweep

    db = tmp_path / "r.sqlite"
    grid = parse_grid('[base]\nattack = "ig"\ndataset = "digits"\nmodel = "mlp"\nsteps = 2\n[grid]\nseed = [0, 1]\n')
    Store(db).close()
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def lock(_counts):  # another process takes the database after the sweep started
        holder.execute("BEGIN EXCLUSIVE")

    counts = run_sweep(grid, db, workers=0, busy_timeout=0.3, on_start=lock)
    assert counts["done"] == 2 and counts["unstored"] == 2
    assert len(read_unstored(db)) == 2 and "kept in" in caplog.text
    holder.execute("ROLLBACK")
    holder.close()
    again = run_sweep(grid, db, workers=0)
    assert again["skipped"] == 2 and again["done"] == 0  # the kept runs were stored, not run again
    assert not unstored_path(db).exists()
    with Store(db, readonly=True) as store:
        rows = store.runs("done", with_images=True)
        assert len(rows) == 2 and all(r["image"][:4] == b"\x89PNG" for r in rows)


def test_a_lock_that_outlasts_the_wait_is_one_clear_error(tmp_path):
    db = tmp_path / "r.sqlite"
    Store(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with Store(db, busy_timeout=0.2) as store, pytest.raises(StoreBusyError, match="locked by another process"):
        store.record(_result("a"))
    holder.execute("ROLLBACK")
    holder.close()
