"""Live progress of the audit through Flower's own logger, so ``flwr run --stream`` shows it.

Messages go to the ``flwr.gradleak`` logger, a child of Flower's ``flwr`` logger: they are
printed by Flower's console handler (and uploaded with the ServerApp's logs in a deployment)
with Flower's format. Per update one line (``INFO``; ``WARNING`` for a failure, a timeout or a
cancellation, with its reason); per round, once its last attack is resolved, one summary: how
many updates were attacked, failed, over budget, cancelled, skipped, the best and median PSNR
so far (when the truth is known) and the failures' reasons.

Example:
    >>> rows = [{"round": 1, "node_id": 5, "partition_id": None, "status": "failed", "reason": "boom",
    ...          "metrics": None, "seconds": 0.1}]
    >>> round_line(1, rows)
    'gradleak audit: round 1 done: 0/1 attacked, 1 failed | failures: node 5: boom'
"""

from __future__ import annotations

import logging
from typing import Any

from gradleak.integrations.flower.auditreport import STATUS_WORDS, client_name, counts, fmt, median, psnr

LOGGER = logging.getLogger("flwr.gradleak")
"""The audit's logger: a child of Flower's ``flwr`` logger."""


def record_line(row: dict[str, Any]) -> str:
    """One line for one resolved update."""
    who = f"round {row['round']}, {client_name(row)}" + (
        f" (node {row['node_id']})" if row.get("partition_id") is not None else "")
    if row["status"] == "ok":
        score = psnr(row)
        return (f"gradleak audit: {who} attacked in {row.get('seconds') or 0:.1f} s"
                + (f", PSNR {fmt(score)} dB" if score is not None else " (unscored: no truth)"))
    return f"gradleak audit: {who} {STATUS_WORDS[row['status']]}: {row.get('reason', '')}"


def round_line(server_round: int, rows: list[dict[str, Any]]) -> str:
    """The summary of ``server_round`` (its rows) and of the scores so far (all ``rows``)."""
    mine = [r for r in rows if r["round"] == server_round]
    c = counts(mine)
    parts = [f"{c['ok']}/{len(mine)} attacked"] + [f"{c[s]} {STATUS_WORDS[s]}" for s in
                                                   ("failed", "timeout", "cancelled", "skipped") if c[s]]
    scored = [(psnr(r), r) for r in rows if psnr(r) is not None]
    line = f"gradleak audit: round {server_round} done: " + ", ".join(parts)
    if scored:
        best, row = max(scored, key=lambda t: t[0])
        line += (f" | PSNR so far: best {fmt(best)} dB (round {row['round']}, {client_name(row)}), "
                 f"median {fmt(median(v for v, _ in scored))} dB over {len(scored)} updates")
    problems = [r for r in mine if r["status"] not in ("ok",)]
    if problems:
        line += " | failures: " + "; ".join(f"{client_name(r)}: {r.get('reason', '')[:120]}" for r in problems[:5])
        if len(problems) > 5:
            line += f"; and {len(problems) - 5} more"
    return line


def log_record(row: dict[str, Any]) -> None:
    """Log one resolved update (``WARNING`` unless it was attacked)."""
    LOGGER.log(logging.INFO if row["status"] == "ok" else logging.WARNING, record_line(row))


def log_round(server_round: int, rows: list[dict[str, Any]]) -> None:
    """Log the round summary."""
    LOGGER.info(round_line(server_round, rows))
