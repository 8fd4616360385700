"""Reports of a sweep's results database: self-contained HTML, Markdown or CSV.

Example:
    >>> from gradleak.report import write_report
    >>> write_report("results.sqlite", "report.html")  # doctest: +SKIP
    PosixPath('report.html')
"""

from __future__ import annotations

from pathlib import Path

from gradleak.core.errors import ConfigError
from gradleak.experiment.outputs import check_output_file, write_file
from gradleak.report.html import render_html, write_html
from gradleak.report.tabular import BY, csv_table, markdown_table, render_table

FORMATS = ("html", "md", "csv")


def write_report(db: str | Path, out: str | Path | None, *, fmt: str = "html", by: str = "summary",
                 overwrite: bool = False) -> str:
    """Write the report of ``db`` in ``fmt`` to ``out`` (or return it when ``out`` is None).

    ``out`` is checked before the report is made (an existing file needs ``overwrite``; a folder,
    a path under a file or an unwritable folder is refused) and written to a temporary name,
    then renamed into place.

    Args:
        db: the SQLite file of a sweep (it may still be running).
        out: the output file; ``None`` returns the text instead.
        fmt: ``html``, ``md`` or ``csv``.
        by: for ``md``/``csv``: ``summary`` (attack × defense), ``preset``, ``config`` or ``runs``.
        overwrite: replace an existing ``out``.

    Returns:
        The path written, or the report text when ``out`` is None.
    """
    problems = []
    if fmt not in FORMATS:
        problems.append(f"unknown report format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if by not in BY:
        problems.append(f"unknown table grouping {by!r}; choose one of: {', '.join(BY)}")
    if problems:
        raise ConfigError("; ".join(problems))
    path = None if out is None else check_output_file(out, overwrite=overwrite, what="report file")
    text = render_html(db) if fmt == "html" else render_table(db, fmt_name=fmt, by=by)
    if path is None:
        return text
    write_file(path, text, overwrite=overwrite)
    return str(path)


__all__ = ["FORMATS", "csv_table", "markdown_table", "render_html", "render_table", "write_html",
           "write_report"]
