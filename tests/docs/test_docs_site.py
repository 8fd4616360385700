"""The documentation site builds without a single warning (broken links, docstrings that do not
render, pages missing from the build) — the CI check behind ``make docs``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("material")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tutorial = (tmp_path / "site" / "tutorial.html").read_text()
    assert "from a first attack to a defended sweep report" in tutorial
    api = (tmp_path / "site" / "api" / "experiment.html").read_text()
    # docstrings render: reST roles became code, doctests became code blocks, no raw markup left
    assert "fit_report" in api and ":class:`" not in api and ":func:`" not in api and "``" not in api


def test_rst_roles_extension_converts_markup():
    sys.path.insert(0, str(ROOT / "docs" / "ext"))
    try:
        pytest.importorskip("griffe")
        from rst_roles import to_markdown
    finally:
        sys.path.remove(str(ROOT / "docs" / "ext"))
    text = "See :class:`~gradleak.core.types.ClientUpdate` and :func:`gradleak.run`::\n\n    Example:\n" \
           "        $ gradleak attack ig \\\n            --steps 5\n        >>> 1 + 1\n        2\n"
    out = to_markdown(text)
    assert "`ClientUpdate`" in out and "`gradleak.run`:" in out and "::" not in out
    assert "Examples:" in out and "```console" in out and ">>> 1 + 1" in out
