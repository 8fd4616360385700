"""One self-contained HTML report of a results database (images inlined, no scripts, no links out).

Sections: the state of the database (done / failed / pending, so a report of a sweep that is
still running says so), the summary per attack × defense (median and IQR of PSNR, SSIM, label
accuracy and exact rate), the same per configuration, the plots the data supports, the
truth-vs-reconstruction grids of each attack's best, median and worst run, and the failed runs.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from gradleak.sweep.store import Store
    >>> db = Path(tempfile.mkdtemp()) / "r.sqlite"
    >>> Store(db).close()
    >>> "<html" in render_html(db)
    True
"""

from __future__ import annotations

import base64
import html
import struct
import time
from pathlib import Path
from typing import Any

from gradleak.experiment.outputs import check_output_file, write_file
from gradleak.report.plots import make_plots, png_bytes
from gradleak.report.stats import (
    METRIC_NAMES,
    REPORT_METRICS,
    assumptions_cell,
    defense_label,
    fmt,
    fmt_iqr,
    group,
    summarise,
    varying,
)
from gradleak.sweep.store import Store

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1240px;
color:#1d1d1f;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;vertical-align:top}
th{background:#f3f3f6}td.l,th.l{text-align:left}
.state{display:flex;gap:1rem;flex-wrap:wrap}.state div{background:#f3f3f6;border-radius:6px;
padding:.5rem 1rem}.state b{display:block;font-size:1.4rem}
.plots,.grids{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0;max-width:100%}
.grids figure{max-width:380px}.plots figure{max-width:580px}
figcaption{font-size:.85rem;color:#444;max-width:640px}img{max-width:100%}
.grids img{image-rendering:pixelated}
.warn{background:#fff4e0;border-left:4px solid #f0a030;padding:.5rem 1rem}
pre{white-space:pre-wrap;font-size:.8rem;margin:0}
"""


ASSUMPTIONS_NOTE = ('<p class="note">Assumptions: what the runs assumed the server knows. '
                    "<b>*</b> marks an upper-bound assumption (known labels, shared BN statistics, "
                    "eval-mode BN, an untrained model): such a result is a best case for the attacker, "
                    "not a realistic one.</p>")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(data: bytes, alt: str, *, zoom: bool = False) -> str:
    size = ""
    if zoom and data[:8] == b"\x89PNG\r\n\x1a\n":  # small reconstructions drawn 2× (pixelated)
        width, height = struct.unpack(">II", data[16:24])
        if width < 400:
            size = f' width="{2 * width}" height="{2 * height}"'
    return f'<img alt="{_e(alt)}"{size} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(header: list[str], rows: list[list[str]], left: int = 0) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_e(c)}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    table = summarise(rows, keys)
    header = (keys + ["runs"] + [f"{METRIC_NAMES[m]} median [IQR]" for m in REPORT_METRICS]
              + ["seconds", "assumptions"])
    body = [[fmt(e[k]) for k in keys] + [str(e["n"])] + [fmt_iqr(e[m]) for m in REPORT_METRICS]
            + [fmt(e["seconds"]), assumptions_cell(e["assumptions"])] for e in table]
    return _table(header, body, left=len(keys)) + ASSUMPTIONS_NOTE


def _caption(row: dict[str, Any], which: str) -> str:
    return (f"{which}: {row['attack']} · {defense_label(row['defenses'])} · b={row['batch_size']} · "
            f"{row['protocol']} · seed {row['seed']} — PSNR {fmt(row['psnr'])}, SSIM {fmt(row['ssim'])}, "
            f"labels {fmt(row['label_accuracy'])} (run {row['key']}; top row truth, bottom row "
            "reconstruction)")


def _grids(store: Store, rows: list[dict[str, Any]]) -> str:
    parts = []
    for attack in sorted({r["attack"] for r in rows}):
        ranked = sorted((r for r in rows if r["attack"] == attack and r.get("psnr") is not None),
                        key=lambda r: (-r["psnr"], r["key"]))
        if not ranked:
            continue
        picks = {"best": ranked[0], "median": ranked[len(ranked) // 2], "worst": ranked[-1]}
        figures, shown = [], set()
        for which, row in picks.items():
            if row["key"] in shown:  # fewer than three runs: show each once
                continue
            shown.add(row["key"])
            image = store.image(row["key"])
            if image:
                figures.append(f"<figure>{_img(image, f'{attack} {which} run', zoom=True)}"
                               f"<figcaption>{_e(_caption(row, which))}</figcaption></figure>")
        if figures:
            parts.append(f"<h3>{_e(attack)}</h3><div class=\"grids\">{''.join(figures)}</div>")
    return "".join(parts) or "<p>No reconstructions stored yet.</p>"


def render_html(db: str | Path, *, title: str | None = None) -> str:
    """The report of ``db`` as one HTML string (works while a sweep is still writing)."""
    with Store(db, readonly=True) as store:
        done = store.runs("done")
        failed = store.runs("failed")
        counts = store.counts()
        body = [_state(db, counts)]
        body.append("<h2>Summary per attack × defense</h2>")
        body.append(_summary_table(done, ["attack", "defense"]) if done else "<p>No finished runs yet.</p>")
        if len({r.get("preset") for r in done}) > 1:
            body.append("<h2>Summary per preset × attack × defense</h2>")
            body.append(_summary_table(done, ["preset", "attack", "defense"]))
        detail_keys = varying(done)
        if done and detail_keys:
            groups = len(group(done, detail_keys))
            body.append(f"<h2>Per configuration</h2><details{' open' if groups <= 20 else ''}><summary>"
                        "Grouped by every setting that varies (except the seed)</summary>"
                        + _summary_table(done, detail_keys) + "</details>")
        figs = make_plots(done)
        body.append("<h2>Plots</h2>")
        if figs:
            body.append('<div class="plots">' + "".join(
                f"<figure>{_img(png_bytes(fig), fig.axes[0].get_title())}"
                f"<figcaption>{_e(caption)} Points: median over seeds; bars: interquartile range."
                f"</figcaption></figure>" for caption, fig in figs) + "</div>")
        else:
            body.append("<p>The finished runs do not vary batch size, defense strength or local steps "
                        "yet, so there is nothing to plot.</p>")
        body.append("<h2>Best, median and worst reconstruction per attack (by PSNR)</h2>")
        body.append(_grids(store, done))
        if failed:
            body.append("<h2>Failed runs</h2><p>Run the sweep again with <code>--retry-failed</code> "
                        "to retry them.</p>")
            body.append(_table(["run", "attack", "defense", "batch", "attempts", "error"],
                               [[r["key"], r["attack"], defense_label(r["defenses"]), fmt(r["batch_size"]),
                                 fmt(r["attempts"]), (r["error"] or "")[:400]] for r in failed], left=6))
        body.append(_versions(done + failed))
    name = title or f"gradleak report: {Path(db).name}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(name)}</title><style>{CSS}</style></head>\n<body><h1>{_e(name)}</h1>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _state(db: str | Path, counts: dict[str, int]) -> str:
    boxes = "".join(f"<div><b>{counts[k]}</b>{k}</div>" for k in ("done", "failed", "pending", "planned"))
    note = (f'<p class="warn">{counts["pending"]} planned run(s) have not finished: the sweep is still '
            "running, was stopped, or is resumable with the same command.</p>" if counts["pending"] else "")
    return (f"<p>Database <code>{_e(Path(db).name)}</code>, read {_e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}."
            f"</p><div class=\"state\">{boxes}</div>{note}")


def _versions(rows: list[dict[str, Any]]) -> str:
    seen = sorted({tuple(sorted((r.get("versions") or {}).items())) for r in rows})
    if not seen:
        return ""
    items = "".join(f"<li>{_e(', '.join(f'{k} {v}' for k, v in v))}</li>" for v in seen if v)
    return f"<h2>Versions</h2><ul>{items}</ul>"


def write_html(db: str | Path, out: str | Path, *, title: str | None = None, overwrite: bool = True) -> Path:
    """Write the HTML report of ``db`` to ``out`` (a temporary name renamed into place); return its path."""
    path = check_output_file(out, overwrite=overwrite, what="report file")
    write_file(path, render_html(db, title=title), overwrite=overwrite)
    return path
