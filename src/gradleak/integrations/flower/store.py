"""Where the audit of a federated run puts its results: one record per (round, client).

:class:`AuditRecord` is one attacked (or skipped, or failed) client update. A store is any
object with ``add(record)`` and ``summaries()``; two ship here:

* :class:`AuditMemoryStore` keeps the records in memory (the default).
* :class:`AuditFolderStore` writes one run folder per record, in the layout of
  ``gradleak attack`` (``config.json``, ``metrics.json``, ``reconstruction.png``), under
  ``ROOT/round-RRR/node-ID/``, plus ``ROOT/index.json`` (every record's summary, rewritten
  after each one), ``ROOT/audit.sqlite`` (the same records as sweep rows) and, from
  :meth:`write_report`, ``ROOT/report.md`` (per client, per round, every update),
  ``ROOT/summary.json`` and ``ROOT/report.html`` (the sweeps' HTML report of those rows).
* :class:`AuditSQLiteStore` writes one row per record into the sweeps' SQLite results file
  (:class:`gradleak.sweep.store.Store`), so ``gradleak report`` tools read an audit like a sweep;
  its :meth:`~AuditSQLiteStore.write_report` writes ``<db>.md`` and ``<db>.html`` beside it.

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
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from gradleak.core.types import GroundTruth, Reconstruction
from gradleak.experiment.outputs import check_out_dir, write_file, write_marker
from gradleak.experiment.runfolder import image_grid, write_json
from gradleak.integrations.flower.auditreport import format_report

log = logging.getLogger(__name__)

Status = Literal["ok", "skipped", "failed", "timeout", "cancelled"]
METRIC_KEYS = ("mse", "psnr", "ssim", "lpips", "label_accuracy", "exact_fraction")


@dataclass
class AuditRecord:
    """One client update of one round, and what the attack made of it.

    Args:
        round: the Flower server round (from 1).
        node_id: the client's node id (what the server sees).
        status: ``ok`` (attacked), ``skipped`` (the reply could not be read as an update),
            ``failed`` (the attack raised), ``timeout`` (it ran past its budget and was stopped or
            abandoned) or ``cancelled`` (it never ran: the round's budget was spent first, or the
            run stopped); ``reason`` says why for every status but ``ok``.
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
        partition_id: the client's partition id, when its reply said it.
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
    partition_id: int | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-able row: identity, status, settings and the headline metrics."""
        metrics = {k: self.metrics.get(k) for k in METRIC_KEYS} if self.metrics else None
        return {"round": self.round, "node_id": self.node_id, "partition_id": self.partition_id, "status": self.status,
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
        (self.root / "audit.sqlite").unlink(missing_ok=True)
        self._write_lock = threading.Lock()
        self._report_lock = threading.Lock()
        self.db = AuditSQLiteStore(self.root / "audit.sqlite")
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
        self.db.add(record)

    def write_report(self, extra: dict[str, Any] | None = None) -> Path:
        """Write ``report.md``, ``summary.json`` (with ``extra``) and ``report.html``; return the Markdown's path."""
        with self._report_lock:
            rows = self.summaries()
            write_json(self.root / "summary.json", {**(extra or {}), "records": rows})
            path = self.root / "report.md"
            _atomic_write(path, format_report(rows, extra))
            self.db.write_html(self.root / "report.html")
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
        client = f"partition {record.partition_id}" if record.partition_id is not None else f"node {record.node_id}"
        config = {**record.config, "round": record.round, "node_id": record.node_id, "client": client,
                  "partition_id": record.partition_id, "source": "flower",
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

    def write_html(self, out: str | Path) -> Path:
        """The sweeps' HTML report of these rows (all audits in the file), written to ``out``."""
        from gradleak.report.html import write_html

        with self._write_lock:
            return write_html(self.path, out, title=f"gradleak audit of a federated run ({self.path.name})")

    def write_report(self, extra: dict[str, Any] | None = None) -> Path:
        """Write ``<db>.md`` (this audit's records) and ``<db>.html`` beside the database; return the ``.md`` path."""
        path = self.path.with_suffix(".md")
        _atomic_write(path, format_report(self.summaries(), extra))
        self.write_html(self.path.with_suffix(".html"))
        return path


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


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half a report."""
    write_file(path, text)
