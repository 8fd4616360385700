"""What an attack offers, read from its declarations: options and defaults, presets, requirements.

Everything comes from the attack class itself — the constructor's keyword arguments and
defaults, the ``Args:`` section of the class docstring, ``presets`` (``tiny`` for smoke runs,
``paper`` for the paper's settings when the attack declares one), the capability attributes,
and the ``Needs:`` paragraph of the module docstring — so a user-registered attack is
described the same way as a built-in one.

Example:
    >>> d = describe_attack("ig")
    >>> d["options"]["steps"]["default"], "tiny" in d["presets"]
    (1000, True)
    >>> d["requires"].startswith("the labels")
    True
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from gradleak.core.doctext import arguments, first_line, first_paragraph, paragraph
from gradleak.core.registry import ATTACKS

SET_BY_CLI = {"labels": "--labels", "seed": "--seed", "transform": "--adaptive", "steps": "--steps",
              "restarts": "--restarts", "label_map": "--label-map"}
"""Options that have their own ``gradleak attack`` flag (``-p`` works for them too)."""


def attack_options(cls: Any) -> dict[str, dict[str, Any]]:
    """Each keyword option of the attack's constructor: ``default`` and ``help`` (from ``Args:``)."""
    helps = arguments(cls.__doc__)
    out: dict[str, dict[str, Any]] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind not in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            continue
        default = None if param.default is inspect.Parameter.empty else param.default
        out[name] = {"default": default, "help": helps.get(name, ""), "flag": SET_BY_CLI.get(name)}
    return out


def attack_requirements(cls: Any) -> str:
    """What the attack needs, from the ``Needs:`` paragraph of its module docstring ('' if none)."""
    module = sys.modules.get(cls.__module__)
    text = paragraph(getattr(module, "__doc__", None), "Needs:")
    return text[len("Needs:"):].strip() if text else ""


def capabilities(cls: Any) -> dict[str, Any]:
    """The declared capabilities as plain values."""
    return {"needs_labels": cls.needs_labels, "takes_labels": cls.takes_labels,
            "needs_prior": cls.needs_prior, "supports_adaptive": cls.supports_adaptive,
            "takes_seed": cls.takes_seed, "update_kinds": list(cls.update_kinds),
            "exact": getattr(cls, "exact", False), "progress_unit": getattr(cls, "progress_unit", "steps")}


def describe_attack(name: str) -> dict[str, Any]:
    """Everything ``gradleak attack NAME --help`` and ``gradleak list attacks --verbose`` show."""
    cls = ATTACKS.get(name)
    module = sys.modules.get(cls.__module__)
    return {"name": name, "summary": first_line(cls.__doc__),
            "paper": first_paragraph(getattr(module, "__doc__", "")),
            "options": attack_options(cls), "presets": {k: dict(v) for k, v in getattr(cls, "presets", {}).items()},
            "requires": attack_requirements(cls), "capabilities": capabilities(cls)}


def requirement_summary(caps: dict[str, Any]) -> list[str]:
    """Short lines that restate the declared capabilities for a person.

    Example:
        >>> requirement_summary(capabilities(ATTACKS.get("spear")))[0]
        'updates: gradients, weight_delta'
    """
    lines = [f"updates: {', '.join(caps['update_kinds'])}"]
    if caps["needs_labels"]:
        lines.append("labels: needs them (known, or restored from the last linear layer: --labels restore)")
    elif caps["takes_labels"]:
        lines.append("labels: optional (reported when known or restorable)")
    if caps["needs_prior"]:
        lines.append("prior: a generator (-p generator=NAME or a weights file; 'gradleak prior list')")
    lines.append(f"adaptive (--adaptive): {'yes' if caps['supports_adaptive'] else 'no'}")
    if caps["exact"]:
        lines.append("exact: recovers the batch to float precision when it applies")
    return lines
