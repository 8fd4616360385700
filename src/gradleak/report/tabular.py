"""Markdown and CSV reports for papers and spreadsheets.

``by="summary"`` gives one row per attack × defense (median and IQR), ``by="preset"`` one per
sweep preset × attack × defense, ``by="config"`` one row per
configuration (every varying setting except the seed), ``by="runs"`` one row per finished or
failed run (CSV keeps full precision; Markdown rounds).

Example:
    >>> rows = [{"config": {"attack": "ig", "defenses": [], "seed": 0}, "psnr": 20.0, "ssim": 0.5,
    ...          "label_accuracy": 1.0, "exact_fraction": 0.0, "seconds": 1.0}]
    >>> print(markdown_table(rows).splitlines()[2][:40])
    | ig | none | 1 | 20 | 20–20 | 0.5 | 0.5
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from gradleak.report.stats import METRIC_NAMES, REPORT_METRICS, assumptions_cell, fmt, summarise, varying
from gradleak.sweep.store import METRICS, Store

BY = ("summary", "preset", "config", "runs")
RUN_COLUMNS = ("key", "preset", "status", "attack", "dataset", "model", "batch_size", "protocol",
               "local_steps", "labels", "defenses", "seed", *METRICS, "seconds", "wall_seconds",
               "attempts", "error")


def _summary_rows(rows: list[dict[str, Any]], keys: list[str]) -> tuple[list[str], list[list[Any]]]:
    header = keys + ["runs"]
    for m in REPORT_METRICS:
        header += [f"{METRIC_NAMES[m]} median", f"{METRIC_NAMES[m]} IQR"]
    header += ["seconds", "assumptions"]
    body = []
    for e in summarise(rows, keys):
        line: list[Any] = [e[k] for k in keys] + [e["n"]]
        for m in REPORT_METRICS:
            med, q1, q3 = e[m]
            line += [med, (q1, q3)]
        body.append(line + [e["seconds"], assumptions_cell(e["assumptions"])])
    return header, body


def _table(rows: list[dict[str, Any]], by: str) -> tuple[list[str], list[list[Any]]]:
    if by == "runs":
        return list(RUN_COLUMNS), [[r.get(c) for c in RUN_COLUMNS] for r in rows]
    keys = {"config": varying(rows), "preset": ["preset", "attack", "defense"]}.get(by, ["attack", "defense"])
    return _summary_rows([r for r in rows if r.get("status", "done") == "done"], keys or ["attack"])


def _cell_md(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2:
        return f"{fmt(value[0])}–{fmt(value[1])}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return fmt(value).replace("|", "\\|").replace("*", "\\*").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]], by: str = "summary") -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (from :meth:`Store.runs`)."""
    header, body = _table(rows, by)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell_md(c) for c in line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict[str, Any]], by: str = "summary") -> str:
    """A CSV table of ``rows``; IQRs become two columns (q1, q3)."""
    header, body = _table(rows, by)
    flat_header: list[str] = []
    for h in header:
        flat_header += [f"{h[:-4]} q1", f"{h[:-4]} q3"] if h.endswith(" IQR") else [h]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(flat_header)
    for line in body:
        out: list[Any] = []
        for value in line:
            if isinstance(value, tuple) and len(value) == 2:
                out += list(value)
            elif isinstance(value, list):
                out.append(" + ".join(map(str, value)))
            else:
                out.append("" if value is None else value)
        writer.writerow(out)
    return buf.getvalue()


def render_table(db: str | Path, *, fmt_name: str = "md", by: str = "summary") -> str:
    """The Markdown (``md``) or CSV (``csv``) report of a results database."""
    with Store(db, readonly=True) as store:
        rows = store.runs() if by == "runs" else store.runs("done")
    return markdown_table(rows, by) if fmt_name == "md" else csv_table(rows, by)
