"""Docstrings as plain text for a terminal: reST/Markdown markup removed, sections picked out.

Example:
    >>> plain("Counts ``K·p̄`` from :class:`~gradleak.core.types.ClientUpdate` (see :func:`resolve`).")
    'Counts K·p̄ from ClientUpdate (see resolve).'
    >>> doc = '''Title line.
    ...
    ...     Args:
    ...         steps: Adam steps
    ...             (the paper: 4800).
    ...         lr, tv: rates.
    ...     '''
    >>> arguments(doc)
    {'steps': 'Adam steps (the paper: 4800).', 'lr': 'rates.', 'tv': 'rates.'}
"""

from __future__ import annotations

import inspect
import re

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):`~?([^`]+)`")
_CODE = re.compile(r"``([^`]+)``")
_SECTION = re.compile(r"^(Args|Arguments|Returns|Raises|Example|Examples|Yields|Note|Notes|Attributes):\s*$")


def plain(text: str | None) -> str:
    """Drop reST roles (``:class:`~a.B``` → ``B``) and double backticks; keep the words."""
    if not text:
        return ""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).count("~") else m.group(1), text)
    return _CODE.sub(r"\1", text)


def first_line(doc: str | None) -> str:
    """The summary line of a docstring, as plain text ('' when there is none)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    return plain(lines[0].strip()) if lines else ""


def first_paragraph(doc: str | None) -> str:
    """The docstring's text up to its first blank line, on one line, plain."""
    text = inspect.cleandoc(doc or "")
    return plain(" ".join(line.strip() for line in re.split(r"\n\s*\n", text, maxsplit=1)[0].splitlines()))


def paragraph(doc: str | None, start: str) -> str:
    """The paragraph of ``doc`` that begins at ``start`` (e.g. ``"Needs:"``), joined on one line, plain."""
    text = inspect.cleandoc(doc or "")
    index = text.find(start)
    if index < 0:
        return ""
    block = re.split(r"\n\s*\n", text[index:], maxsplit=1)[0]
    return plain(" ".join(line.strip() for line in block.splitlines()))


def arguments(doc: str | None) -> dict[str, str]:
    """The ``Args:`` section of a Google-style docstring: name → description (plain, one line).

    An entry may name several arguments (``lr, tv: ...``); each gets the description.
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    out: dict[str, str] = {}
    inside, indent, names = False, 0, []
    for line in lines:
        stripped = line.strip()
        if _SECTION.match(stripped):
            inside, indent, names = stripped.startswith("Arg"), 0, []
            continue
        if not inside or not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        head, colon, rest = stripped.partition(":")
        keys = [k.strip() for k in head.split(",")]
        if colon and (indent == 0 or depth <= indent) and all(k.isidentifier() for k in keys):
            indent, names = depth, keys
            for key in keys:
                out[key] = rest.strip()
        elif names and depth > indent:
            for key in names:
                out[key] = (out[key] + " " + stripped).strip()
        else:
            inside = False
    return {k: plain(v) for k, v in out.items()}
