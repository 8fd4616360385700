"""A griffe extension for the documentation build: reST and doctest habits become Markdown.

gradleak's docstrings are Google style with a little reST (``:class:`~gradleak.x.Y```,
``:func:`...```, literal blocks introduced by ``::``) and ``Example:`` sections holding
doctests or ``$ gradleak ...`` command lines. mkdocstrings renders Markdown, so before
rendering: roles become code spans (``Y``), a trailing ``::`` becomes ``:``, ``Example:``
becomes griffe's ``Examples:`` section (doctests render as code), and runs of ``$ `` command
lines become console code blocks. Double backticks are already Markdown code spans. The
docstrings in the source are left as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):`(~?)([^`]+)`")


def _commands(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.lstrip().startswith("$ "):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        block = []
        while i < len(lines) and (lines[i].lstrip().startswith("$ ") or (block and block[-1].endswith("\\"))):
            block.append(lines[i])
            i += 1
        out += [f"{indent}```console", *block, f"{indent}```"]
    return out


def to_markdown(text: str) -> str:
    """Convert the reST and doctest habits of gradleak's docstrings into Markdown."""
    text = ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)
    text = re.sub(r"(\S)::[ \t]*$", r"\1:", text, flags=re.MULTILINE)
    text = re.sub(r"^(\s*)Example:[ \t]*$", r"\1Examples:", text, flags=re.MULTILINE)
    return "\n".join(_commands(text.splitlines()))


class RstRoles(griffe.Extension):
    """Rewrite every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
