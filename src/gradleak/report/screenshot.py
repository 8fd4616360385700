"""Open an HTML report in headless Chromium, save a screenshot and list what went wrong.

Needs the ``chromium`` binary (Debian: ``apt-get install chromium``). The browser runs with
a throw-away profile and no network features; its console log is scanned for errors
(uncaught exceptions, failed loads, blocked resources), and the HTML itself is checked with
:func:`check_html` (balanced tags, only inlined ``data:`` images that decode as PNG, no
references outside the file).

Example:
    $ python -m gradleak.report.screenshot report.html report.png
"""

from __future__ import annotations

import base64
import binascii
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from gradleak.core.errors import ConfigError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0")
# the report has no scripts, so any console message at all is a problem
CONSOLE_ERRORS = re.compile(r"Uncaught|net::ERR_|Failed to load|Not allowed to load|Refused to")
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "wbr", "source"}


def find_browser() -> str | None:
    """The path of a Chromium-like browser, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith(("data:", "#")):
                self.problems.append(f"<{tag} {name}={value[:60]!r}> refers outside the file")
        if tag == "img":
            self.images += 1
            src = dict(attrs).get("src") or ""
            if not src.startswith("data:image/png;base64,"):
                self.problems.append("an <img> is not an inlined PNG")
                return
            try:
                data = base64.b64decode(src.split(",", 1)[1], validate=True)
            except binascii.Error:
                self.problems.append("an inlined image is not valid base64")
                return
            if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                self.problems.append("an inlined image is not a PNG")
        if tag == "script":
            self.problems.append("the report should not need scripts")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"unbalanced </{tag}> (open: {'/'.join(self.stack[-3:])})")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()


def check_html(text: str) -> tuple[list[str], int]:
    """Problems of a self-contained report, and its number of images."""
    checker = _Checker()
    checker.feed(text)
    checker.close()
    problems = list(checker.problems)
    if checker.stack:
        problems.append(f"unclosed tags: {', '.join(checker.stack)}")
    if not text.lstrip().lower().startswith("<!doctype html>"):
        problems.append("missing <!DOCTYPE html>")
    return problems, checker.images


def screenshot(html_path: str | Path, png_path: str | Path, *, width: int = 1280, height: int = 3000,
               timeout: float = 120.0) -> list[str]:
    """Render ``html_path`` in headless Chromium to ``png_path``; return the errors found.

    Raises:
        ConfigError: no Chromium is installed, or the HTML file does not exist.
    """
    browser = find_browser()
    if browser is None:
        raise ConfigError(f"no headless browser found (looked for {', '.join(BROWSERS)}); "
                          "install one, e.g. apt-get install chromium")
    page = Path(html_path).resolve()
    if not page.is_file():
        raise ConfigError(f"report {page} does not exist; write it with 'gradleak report'")
    out = Path(png_path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    errors, _ = check_html(page.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="gradleak-chromium-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={out}", page.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        errors.append(f"chromium exited with status {proc.returncode}: {proc.stderr[-500:]}")
    errors += [f"browser console: {line.strip()}" for line in proc.stderr.splitlines()
               if ":CONSOLE" in line or CONSOLE_ERRORS.search(line)]
    if not out.is_file() or out.stat().st_size < 1000:
        errors.append("chromium wrote no screenshot")
    return errors


def main(argv: list[str] | None = None) -> int:
    """``python -m gradleak.report.screenshot REPORT.html OUT.png``: exit 1 when errors are found."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m gradleak.report.screenshot REPORT.html OUT.png\n")
        return 2
    errors = screenshot(args[0], args[1])
    for error in errors:
        sys.stderr.write(f"report error: {error}\n")
    sys.stdout.write(f"screenshot written to {args[1]}; {len(errors)} error(s)\n")
    return 1 if errors else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
