"""The audit's report in words: per client across rounds, per round, every update (Markdown).

Rows are :meth:`AuditRecord.summary` dicts. A client is named by its partition id when its
replies said it (``partition 3``), else by its node id. Scores are PSNR (dB) when the truth was
known; an exact reconstruction has PSNR ``inf``.

Example:
    >>> rows = [{"round": 1, "node_id": 9, "partition_id": 0, "status": "ok", "reason": "", "seconds": 1.0,
    ...          "num_examples": 8, "metrics": {"psnr": 30.0, "ssim": 0.9, "exact_fraction": 0.5,
    ...          "label_accuracy": 1.0}}]
    >>> client_rows(rows)[0]["client"], client_rows(rows)[0]["best_psnr"]
    ('partition 0', 30.0)
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from typing import Any

from gradleak.core.jsonable import to_jsonable

STATUSES = ("ok", "failed", "timeout", "cancelled", "skipped")
STATUS_WORDS = {"ok": "attacked", "failed": "failed", "timeout": "over budget", "cancelled": "cancelled",
                "skipped": "skipped"}


def client_name(row: dict[str, Any]) -> str:
    """``partition P`` when known, else ``node N``."""
    part = row.get("partition_id")
    return f"partition {part}" if part is not None else f"node {row['node_id']}"


def psnr(row: dict[str, Any]) -> float | None:
    """The row's PSNR, or ``None`` when it was not scored."""
    value = (row.get("metrics") or {}).get("psnr")
    return None if value is None else float(value)


def median(values: Iterable[float]) -> float | None:
    """The median (``inf`` counts as larger than any number), or ``None`` for no values."""
    values = sorted(values)
    return statistics.median(values) if values and not any(math.isnan(v) for v in values) else None


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many rows have each status."""
    return {s: sum(r["status"] == s for r in rows) for s in STATUSES}


def client_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per client across rounds: counts by status, best/median/last PSNR, mean exact fraction."""
    out = []
    for node in sorted({r["node_id"] for r in rows}, key=lambda n: _client_order(rows, n)):
        mine = sorted((r for r in rows if r["node_id"] == node), key=lambda r: r["round"])
        scored = [(r["round"], psnr(r)) for r in mine if psnr(r) is not None]
        exact = [(r.get("metrics") or {}).get("exact_fraction") for r in mine]
        exact = [e for e in exact if e is not None]
        out.append({"client": client_name(mine[-1]), "node_id": node, "partition_id": mine[-1].get("partition_id"),
                    "rounds": [r["round"] for r in mine], **counts(mine),
                    "best_psnr": max((v for _, v in scored), default=None),
                    "median_psnr": median(v for _, v in scored),
                    "last_psnr": scored[-1][1] if scored else None,
                    "mean_exact": sum(exact) / len(exact) if exact else None})
    return out


def _client_order(rows: list[dict[str, Any]], node: int) -> tuple[int, int]:
    parts = [r.get("partition_id") for r in rows if r["node_id"] == node and r.get("partition_id") is not None]
    return (parts[0], node) if parts else (1 << 62, node)


def round_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per round: counts by status, best and median PSNR of that round."""
    out = []
    for server_round in sorted({r["round"] for r in rows}):
        mine = [r for r in rows if r["round"] == server_round]
        scores = [v for v in (psnr(r) for r in mine) if v is not None]
        out.append({"round": server_round, "updates": len(mine), **counts(mine),
                    "best_psnr": max(scores, default=None), "median_psnr": median(scores)})
    return out


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: ``–`` for missing, fixed digits for floats."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |",
            *("| " + " | ".join(cells) + " |" for cells in body)]


def format_report(rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> str:
    """A Markdown report: the run's facts, then per client, per round and every update.

    Example:
        >>> print(format_report([]).splitlines()[0])
        # gradleak audit of a federated run
    """
    lines = ["# gradleak audit of a federated run", ""]
    for key, value in (extra or {}).items():
        lines.append(f"- **{key}**: {json.dumps(to_jsonable(value))}")
    c = counts(rows)
    lines += ["", f"{len(rows)} client updates seen: " + ", ".join(f"{c[s]} {STATUS_WORDS[s]}" for s in STATUSES)
              + ".", "", "## Per client, across rounds", ""]
    lines += _table(["client", "node", "rounds", "attacked", "failed", "over budget", "cancelled", "skipped",
                     "best PSNR", "median PSNR", "last PSNR", "mean exact"],
                    [[r["client"], str(r["node_id"]), ",".join(map(str, r["rounds"])), *(str(r[s]) for s in STATUSES),
                      fmt(r["best_psnr"]), fmt(r["median_psnr"]), fmt(r["last_psnr"]), fmt(r["mean_exact"])]
                     for r in client_rows(rows)])
    lines += ["", "## Per round", ""]
    lines += _table(["round", "updates", "attacked", "failed", "over budget", "cancelled", "skipped", "best PSNR",
                     "median PSNR"],
                    [[str(r["round"]), str(r["updates"]), *(str(r[s]) for s in STATUSES), fmt(r["best_psnr"]),
                      fmt(r["median_psnr"])] for r in round_rows(rows)])
    lines += ["", "## Every update", ""]
    body = []
    for r in sorted(rows, key=lambda r: (r["round"], _client_order(rows, r["node_id"]))):
        m = r.get("metrics") or {}
        body.append([str(r["round"]), client_name(r), str(r["node_id"]), r["status"], fmt(r.get("num_examples")),
                     fmt(m.get("psnr")), fmt(m.get("ssim"), 3), fmt(m.get("exact_fraction")),
                     fmt(m.get("label_accuracy")), fmt(r.get("seconds"), 1),
                     (r.get("reason") or "").replace("|", "/")[:160]])
    lines += _table(["round", "client", "node", "status", "examples", "PSNR", "SSIM", "exact", "labels", "seconds",
                     "note"], body)
    return "\n".join(lines) + "\n"
