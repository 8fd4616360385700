"""Where the audit of a federated run puts its results: one record per (round, client).

:class:`AuditRecord` is one attacked (or skipped, or failed) client update. A store is any
object with ``add(record)`` and ``summaries()``; two ship here:

* :class:`AuditMemoryStore` keeps the records in memory (the default).
* :class:`AuditFolderStore` writes one run folder per record, in the layout of
  ``gradleak attack`` (``config.json``, ``metrics.json``, ``reconstruction.png``), under
  ``ROOT/round-RRR/node-ID/``, plus ``ROOT/index.json`` (every record's summary, rewritten
  after each one) and ``ROOT/report.md`` (a table, written by :meth:`write_report`).
* :class:`AuditSQLiteStore` writes one row per record into the sweeps' SQLite results file
  (:class:`gradleak.sweep.store.Store`), so ``gradleak report`` tools read an audit like a sweep.

Every ``add`` is thread-safe, so attacks may run in a background worker.

Example:
    >>> import tempfile
    >>> store = AuditFolderStore(tempfile.mkdtemp() + "/audit")
    >>> store.add(AuditRecord(round=1, node_id=7, status="skipped", reason="error reply"))
    >>> [s["status"] for s in store.summaries()]
    ['skipped']
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from gradleak.core.jsonable import to_jsonable
from gradleak.core.types import GroundTruth, Reconstruction
from gradleak.experiment.outputs import check_out_dir, write_file, write_marker
from gradleak.experiment.runfolder import image_grid, write_json

log = logging.getLogger(__name__)

Status = Literal["ok", "skipped", "failed"]
METRIC_KEYS = ("mse", "psnr", "ssim", "lpips", "label_accuracy", "exact_fraction")


@dataclass
class AuditRecord:
    """One client update of one round, and what the attack made of it.

    Args:
        round: the Flower server round (from 1).
        node_id: the client's node id (what the server sees).
        status: ``ok`` (attacked), ``skipped`` (the reply could not be read as an update, see
            ``reason``) or ``failed`` (the attack raised, see ``reason``).
        reason: why it was skipped or failed.
        attack: the attack's registry name.
        num_examples: the client's ``num-examples``.
        local_training: the local-training settings taken from the server's train config.
        seconds: the attack's wall-clock time.
        metrics: scores against the ground truth, when a truth hook supplied it.
        reconstruction: the attack's output (kept in memory, written as a PNG by folder stores).
        truth: the client's real data, from the simulation-only truth hook.
        config: the audit's settings (attack options, model, shape), written to ``config.json``.
        out_dir: the run folder, once a folder store wrote it.
    """

    round: int
    node_id: int
    status: Status
    reason: str = ""
    attack: str = ""
    num_examples: int | None = None
    local_training: dict[str, Any] | None = None
    seconds: float = 0.0
    metrics: dict[str, Any] | None = None
    reconstruction: Reconstruction | None = None
    truth: GroundTruth | None = None
    config: dict[str, Any] = field(default_factory=dict)
    out_dir: str | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-able row: identity, status, settings and the headline metrics."""
        metrics = {k: self.metrics.get(k) for k in METRIC_KEYS} if self.metrics else None
        return {"round": self.round, "node_id": self.node_id, "status": self.status,
                "reason": self.reason, "attack": self.attack, "num_examples": self.num_examples,
                "local_training": self.local_training, "seconds": self.seconds, "metrics": metrics,
                "has_reconstruction": self.reconstruction is not None, "out_dir": self.out_dir}


class AuditStore(Protocol):
    """What an audit needs from a store (an SQLite store can implement the same two methods)."""

    def add(self, record: AuditRecord) -> None:
        """Persist one record (called from the server thread or the audit worker)."""

    def summaries(self) -> list[dict[str, Any]]:
        """Every record's :meth:`AuditRecord.summary`, in the order they were added."""
        ...


class AuditMemoryStore:
    """Keeps the records in memory (``records``) — the default store."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self._lock = threading.Lock()

    def add(self, record: AuditRecord) -> None:
        """Append ``record``."""
        with self._lock:
            self.records.append(record)

    def summaries(self) -> list[dict[str, Any]]:
        """Summaries of the records so far."""
        with self._lock:
            return [r.summary() for r in self.records]


class AuditFolderStore(AuditMemoryStore):
    """Run folders per (round, client) under ``root``, an ``index.json`` and a ``report.md``.

    Args:
        root: the audit's output folder; an existing non-empty one needs ``overwrite``.
        overwrite: replace run files of an earlier audit in ``root``.
    """

    def __init__(self, root: str | Path, *, overwrite: bool = False) -> None:
        super().__init__()
        self.root = check_out_dir(root, overwrite=overwrite)
        self.root.mkdir(parents=True, exist_ok=True)
        write_marker(self.root, [], kind="flower-audit")  # gradleak's folder: --overwrite may reuse it
        self._write_lock = threading.Lock()
        write_json(self.root / "index.json", [])

    def add(self, record: AuditRecord) -> None:
        """Write the record's run folder, then rewrite ``index.json``."""
        folder = self.root / f"round-{record.round:03d}" / f"node-{record.node_id}"
        with self._write_lock:
            folder.mkdir(parents=True, exist_ok=True)
            record.out_dir = str(folder)
            _write_record(folder, record)
            super().add(record)
            write_json(self.root / "index.json", self.summaries())

    def write_report(self, extra: dict[str, Any] | None = None) -> Path:
        """Write ``report.md`` (and ``summary.json`` with ``extra``) and return the report's path."""
        rows = self.summaries()
        write_json(self.root / "summary.json", {**(extra or {}), "records": rows})
        path = self.root / "report.md"
        write_file(path, format_report(rows, extra))
        return path


class AuditSQLiteStore(AuditMemoryStore):
    """Rows in a sweep results database (one transaction per record; safe from any thread).

    Keys are ``flower-TAG-rRRR-nNODE`` with ``TAG`` the audit's start time, so several audits
    share one file. ``ok`` records are stored as ``done``; skipped and failed ones as ``failed``
    with the reason as the error.

    Args:
        path: the SQLite file (created when missing).
        tag: distinguishes this audit's rows (default: the start time).
    """

    def __init__(self, path: str | Path, *, tag: str | None = None) -> None:
        from gradleak.sweep.store import Store

        super().__init__()
        self.path, self.tag = Path(path), tag or time.strftime("%Y%m%dT%H%M%S")
        Store(self.path).close()  # create it now: a bad path fails before training starts
        self._write_lock = threading.Lock()

    def add(self, record: AuditRecord) -> None:
        """Store ``record`` as one run row (a new connection per call, so any thread may call)."""
        from gradleak.sweep.store import Store

        ok = record.status == "ok"
        local = record.local_training or {}
        config = {**record.config, "round": record.round, "node_id": record.node_id, "source": "flower",
                  "protocol": "fedavg", "batch_size": record.num_examples, "local_steps": local.get("steps"),
                  "local_training": local, "audit": self.tag}
        row: dict[str, Any] = {"key": f"flower-{self.tag}-r{record.round:03d}-n{record.node_id}",
                               "status": "done" if ok else "failed", "config": config,
                               "seconds": record.seconds,
                               "error": None if ok else record.reason or record.status,
                               "detail": {"audit_status": record.status, "reason": record.reason}}
        if record.metrics:
            row["metrics"] = {k: record.metrics.get(k) for k in METRIC_KEYS}
            row["detail"].update(per_image=record.metrics.get("per_image"),
                                 matching=record.metrics.get("matching"))
        png = _png(record)
        if png is not None:
            row["image"] = png
        with self._write_lock:
            with Store(self.path) as store:
                store.record(row)
            super().add(record)


def _rows(record: AuditRecord) -> list[Any] | None:
    rec, truth = record.reconstruction, record.truth
    if rec is None:
        return None
    if truth is not None and record.metrics and tuple(truth.inputs.shape) == tuple(rec.inputs.shape):
        return [truth.inputs, rec.inputs[record.metrics["matching"]]]
    return [rec.inputs]


def _png(record: AuditRecord) -> bytes | None:
    rows = _rows(record)
    if rows is None:
        return None
    buffer = io.BytesIO()
    image_grid(rows).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_record(folder: Path, record: AuditRecord) -> None:
    from gradleak.core.version import __version__

    write_json(folder / "config.json", {**record.config, "round": record.round, "node_id": record.node_id,
                                        "num_examples": record.num_examples,
                                        "local_training": record.local_training,
                                        "versions": {"gradleak": __version__},
                                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    rec = record.reconstruction
    details: dict[str, Any] = {**record.summary()}
    if rec is not None:
        details.update(info=rec.info, loss_history=rec.loss_history)
    if record.metrics:
        details.update(per_image=record.metrics.get("per_image"), matching=record.metrics.get("matching"))
    write_json(folder / "metrics.json", details)
    rows = _rows(record)
    if rows is not None:
        image_grid(rows).save(folder / "reconstruction.png")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_report(rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> str:
    """A Markdown report: the run's facts, then one table row per (round, client).

    Example:
        >>> print(format_report([]).splitlines()[0])
        # gradleak audit of a federated run
    """
    lines = ["# gradleak audit of a federated run", ""]
    for key, value in (extra or {}).items():
        lines.append(f"- **{key}**: {json.dumps(to_jsonable(value))}")
    ok = [r for r in rows if r["status"] == "ok"]
    lines += ["", f"{len(rows)} client updates seen, {len(ok)} attacked, "
              f"{sum(r['status'] == 'skipped' for r in rows)} skipped, "
              f"{sum(r['status'] == 'failed' for r in rows)} failed.", "",
              "| round | node | status | examples | PSNR | SSIM | exact | labels | seconds | note |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["round"], r["node_id"])):
        m = r["metrics"] or {}
        lines.append(
            f"| {r['round']} | {r['node_id']} | {r['status']} | {_fmt(r['num_examples'])} | "
            f"{_fmt(m.get('psnr'))} | {_fmt(m.get('ssim'), 3)} | {_fmt(m.get('exact_fraction'))} | "
            f"{_fmt(m.get('label_accuracy'))} | {_fmt(r['seconds'], 1)} | {r['reason'][:80]} |")
    return "\n".join(lines) + "\n"
