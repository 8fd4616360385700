"""Why a grid file plans the runs it does: each preset's axes, where each value comes from, and
which values a preset replaced.

How the tables of a grid file combine (the rule :func:`gradleak.sweep.grid.parse_grid` applies):

1. ``[base]`` gives one value per option and ``[grid]`` lists to cross; together they are the
   starting axes (a ``[grid]`` list wins over a ``[base]`` value of the same option).
2. Without ``[presets.*]`` tables the sweep is the product of those axes.
3. With presets, **each preset starts from all of** ``[base]`` **and** ``[grid]``: its own
   options (single values) and its own ``grid.*`` lists are layered on top, replacing the
   starting axis of the same option (a preset value replaces a ``[grid]`` list), and the other
   ``[grid]`` lists are crossed with the preset's own. The sweep is the union of the presets'
   expansions (a run planned by two presets runs once, under the first).
4. ``[per_attack.NAME]`` options apply to runs of attack NAME, below the options a preset sets
   itself; ``[presets.P.per_attack.NAME]`` wins over both.

:func:`explain_grid` reports that for every preset, and ``gradleak sweep --dry-run`` prints it.

Example:
    >>> plans = explain_grid('''
    ... [base]
    ... attack = "ig"
    ... [grid]
    ... seed = [0, 1]
    ... batch_size = [1, 2]
    ... [presets.big]
    ... batch_size = 8
    ... ''')
    >>> plans[0]["runs"], plans[0]["axes"]["seed"]["source"], plans[0]["axes"]["batch_size"]["replaces"]
    (2, '[grid]', '[grid] [1, 2]')
"""

from __future__ import annotations

import sys
from typing import Any

from gradleak.sweep.grid import _flatten, _per_attack

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib


def _axis(values: list[Any], source: str, replaces: str | None = None) -> dict[str, Any]:
    return {"values": values, "source": source, "replaces": replaces}


def _value(value: Any) -> str:
    if isinstance(value, tuple):  # a defense chain
        return " + ".join(value) if value else "none"
    return str(value)


def _show(values: list[Any]) -> str:
    return _value(values[0]) if len(values) == 1 else "[" + ", ".join(map(_value, values)) + "]"


def explain_grid(text: str, *, presets: list[str] | tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """For each preset (or ``default``): its axes with their source, what they replaced, and its run count.

    Args:
        text: the grid file's TOML (already validated by ``parse_grid``).
        presets: only these presets.

    Returns:
        one dict per preset: ``preset``, ``axes`` (option → ``values``, ``source``, ``replaces``),
        ``per_attack`` (attack → options) and ``runs`` (the product of the axis lengths, before
        runs shared with an earlier preset are dropped).
    """
    doc = tomllib.loads(text)
    problems: list[str] = []
    axes: dict[str, dict[str, Any]] = {}
    for key, value in _flatten(doc.get("base", {}), "[base]", problems, lists=False).items():
        axes[key] = _axis([value], "[base]")
    for key, values in _flatten(doc.get("grid", {}), "[grid]", problems, lists=True).items():
        axes[key] = _axis(values, "[grid]", f"[base] {_show(axes[key]['values'])}" if key in axes else None)
    top_attack = _per_attack(doc.get("per_attack", {}), "per_attack", problems)
    table = doc.get("presets") or {"default": None}
    plans = []
    for name, preset in table.items():
        if presets and name not in presets:
            continue
        own = dict(axes)
        per_attack = {a: dict(o) for a, o in top_attack.items()}
        if isinstance(preset, dict):
            preset = dict(preset)
            p_grid = _flatten(preset.pop("grid", {}), f"[presets.{name}].grid", problems, lists=True)
            p_attack = _per_attack(preset.pop("per_attack", {}), f"[presets.{name}].per_attack", problems)
            p_base = _flatten(preset, f"[presets.{name}]", problems, lists=False)
            for key, value in p_base.items():
                own[key] = _axis([value], f"[presets.{name}]", _replaced(own.get(key)))
            for key, values in p_grid.items():
                own[key] = _axis(values, f"[presets.{name}].grid", _replaced(own.get(key)))
            for attack, options in p_attack.items():
                per_attack[attack] = {**per_attack.get(attack, {}), **options}
        runs = 1
        for axis in own.values():
            runs *= len(axis["values"])
        plans.append({"preset": name, "axes": own, "per_attack": per_attack, "runs": runs})
    return plans


def _replaced(axis: dict[str, Any] | None) -> str | None:
    return None if axis is None else f"{axis['source']} {_show(axis['values'])}"


def explanation_lines(plans: list[dict[str, Any]]) -> list[str]:
    """The plans as short sentences (what ``gradleak sweep --dry-run`` prints above the run table).

    Example:
        >>> explanation_lines(explain_grid('[grid]\\nseed = [0, 1]'))[0]
        'default: 2 runs = seed [0, 1] ([grid])'
    """
    lines = []
    for plan in plans:
        crossed = [f"{k} {_show(a['values'])}" + f" ({a['source']})" for k, a in plan["axes"].items()
                   if len(a["values"]) > 1]
        fixed = [f"{k}={_show(a['values'])}" for k, a in plan["axes"].items() if len(a["values"]) == 1]
        line = f"{plan['preset']}: {plan['runs']} run{'s' if plan['runs'] != 1 else ''}"
        line += " = " + " × ".join(crossed) if crossed else " (no lists to cross)"
        if fixed:
            line += "; fixed: " + ", ".join(fixed)
        lines.append(line)
        for key, axis in plan["axes"].items():
            if axis["replaces"]:
                lines.append(f"  {axis['source']} sets {key} = {_show(axis['values'])}, replacing {axis['replaces']}")
        for attack, options in plan["per_attack"].items():
            if options:
                lines.append(f"  runs of {attack} also get {', '.join(f'{k}={v}' for k, v in options.items())}")
    return lines
