"""Sweep grids: a TOML file of base settings, lists to cross and named presets → planned runs.

A grid file has these tables (all optional)::

    [sweep]                 # max_runs = 10000 (the expansion limit), description = "..."
    [base]                  # one value per option, e.g. attack = "ig", steps = 200
    [grid]                  # lists to cross, e.g. batch_size = [1, 2, 4], seed = [0, 1]
    [per_attack.ig]         # attack options used only when attack = "ig", e.g. tv = 1e-4
    [presets.NAME]          # a named experiment: options (single values) plus its own
    [presets.NAME.grid]     #   grid and per_attack tables, layered over [base] and [grid]

An option is any :class:`~gradleak.experiment.Scenario` field or ``gradleak attack`` option, with
dashes or underscores (``batch-size``, ``steps``, ``restarts``, ``defense``, ``param.tv``,
``model-option.width``, ``data-dir``, ``norm``, ``attack_preset``, ``split``). A later layer wins on a
key: base < grid <
top-level per_attack < preset options < preset grid < the preset's per_attack. In a grid,
``defense`` takes specs (``"noise:sigma=0.01"``, ``"none"``) or lists of specs (a chain).
With presets, the sweep is the union of the presets' expansions.

A ``[presets.NAME]`` table is a named *experiment* (``gradleak sweep --preset NAME`` runs only it);
the option ``attack_preset`` picks an attack's *hyper-parameter* preset (``default``, ``paper``,
``tiny``), in any layer; the run's attack options (``steps``, ``per_attack``, ...) override it.

Every problem (syntax, unknown option, wrong type, unknown name, bad value, too many runs) is
collected and raised at once as one :class:`~gradleak.core.errors.ConfigError` before anything runs.
Each run has a stable hash of its non-default settings, so adding a new Scenario field with a
default keeps old hashes valid.

Example:
    >>> grid = parse_grid('''
    ... [base]
    ... attack = "ig"
    ... dataset = "digits"
    ... steps = 5
    ... [grid]
    ... batch_size = [1, 2]
    ... seed = [0, 1]
    ... ''')
    >>> len(grid.runs), grid.runs[0].scenario.attack_options
    (4, {'steps': 5})
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradleak.core.errors import ConfigError, GradleakError
from gradleak.core.limits import MAX_CHECKED_VALUES, MAX_GRID_BYTES, MAX_GRID_DEPTH
from gradleak.experiment.scenario import Scenario, scenario_from_dict
from gradleak.sweep.checks import DICT_FIELDS, check_values, component_problems, field_types, scenario_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib

DEFAULT_MAX_RUNS = 10_000
TABLES = ("sweep", "base", "grid", "per_attack", "presets")
SWEEP_KEYS = ("max_runs", "description", "name")
# CLI spellings that are not Scenario fields → canonical key (a field or "FIELD.option").
ALIASES = {
    "steps": "attack_options.steps", "restarts": "attack_options.restarts", "defense": "defenses",
    "data_dir": "dataset_options.data_dir", "norm": "model_options.norm", "bn": "mode",
    "share_bn_stats": "share_buffers", "param": "attack_options", "p": "attack_options",
    "params": "attack_options", "model_option": "model_options", "dataset_option": "dataset_options",
}
NOT_FOR_SWEEPS = ("out", "overwrite", "save_tensors", "json", "no_progress", "update", "update_kind",
                  "num_examples")
SWEEP_FLAGS = ("device", "workers", "backend", "address", "cpus_per_run", "db", "report", "no_batch")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its stable hash, the preset it came from and its scenario."""

    key: str
    preset: str
    scenario: Scenario


@dataclass(frozen=True)
class Grid:
    """A parsed, validated grid: the distinct planned runs in order, and where they came from."""

    runs: list[PlannedRun]
    source: str
    text: str
    presets: tuple[str, ...]


def scenario_hash(scenario: Scenario) -> str:
    """A stable 16-hex-digit hash of the settings that differ from the defaults.

    Example:
        >>> scenario_hash(Scenario(seed=1)) == scenario_hash(Scenario(seed=1))
        True
        >>> scenario_hash(Scenario(seed=1)) != scenario_hash(Scenario(seed=2))
        True
    """
    default = _default_config()
    data = {k: v for k, v in scenario_config(scenario).items() if default.get(k) != v}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def canonical_key(name: str) -> str | None:
    """``batch-size`` → ``batch_size``, ``steps`` → ``attack_options.steps``; None when unknown."""
    head, dot, rest = name.replace("-", "_").partition(".")
    fields_ = field_types()
    head = ALIASES.get(head, head)
    if head in fields_:
        if dot and head not in DICT_FIELDS:
            return None
        return f"{head}.{rest}" if dot else head
    if head.split(".")[0] in DICT_FIELDS and not dot:
        return head
    return None


def _suggest(name: str) -> str:
    valid = sorted(set(field_types()) | set(ALIASES))
    close = difflib.get_close_matches(name.replace("-", "_"), valid, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{hint}valid options: {', '.join(valid)}"


def _flatten(table: dict[str, Any], where: str, problems: list[str], *, lists: bool) -> dict[str, Any]:
    """Options of one table → ``{canonical_key: value}``; dict-valued options become ``FIELD.option``."""
    out: dict[str, Any] = {}
    for name, value in table.items():
        key = canonical_key(name)
        if key is None:
            flag = name.replace("-", "_")
            why = ("is a per-run CLI flag, not a sweep option" if flag in NOT_FOR_SWEEPS
                   else f"is chosen for the whole sweep on its command line (gradleak sweep GRID "
                        f"--{flag.replace('_', '-')} ...), not in the grid" if flag in SWEEP_FLAGS
                   else "is ambiguous in a grid: [presets.NAME] tables name experiments; an attack's "
                        "hyper-parameter preset is the option attack_preset" if name == "preset"
                   else "is not an option; " + _suggest(name))
            problems.append(f"{where}: {name!r} {why}")
            continue
        items = [(key, value)]
        if key in DICT_FIELDS and isinstance(value, dict):
            items = [(f"{key}.{k}", v) for k, v in value.items()]
        elif "." not in key and isinstance(value, dict):
            problems.append(f"{where}: {name!r} takes a value, not a table")
            continue
        for k, v in items:
            if k in out:
                problems.append(f"{where}: {k!r} is set twice (through {name!r} and an alias)")
            if lists and not isinstance(v, list):
                problems.append(f"{where}: {name!r} must be a list of values to cross, got {v!r}")
                continue
            if lists and not v:
                problems.append(f"{where}: {name!r} is an empty list (it would expand to no runs)")
                continue
            out[k] = [_defense_chain(x) if k == "defenses" else x for x in v] if lists else (
                _defense_chain(v) if k == "defenses" else v)
    return out


def _defense_chain(value: Any) -> Any:
    """``"noise:sigma=1"`` → ``("noise:sigma=1",)``; ``"none"``/``""`` → ``()``; lists as tuples."""
    if isinstance(value, str):
        return () if value.strip().lower() in ("", "none") else (value,)
    return tuple(value) if isinstance(value, list) else value


def _per_attack(table: Any, where: str, problems: list[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        problems.append(f"{where}: must hold one table per attack, e.g. [{where}.ig] tv = 1e-4")
        return {}
    return {name: dict(options) for name, options in table.items()}


def _resolve(values: dict[str, Any], per_attack: dict[str, dict[str, Any]]) -> Scenario:
    data: dict[str, Any] = {name: {} for name in DICT_FIELDS}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if dot:
            data[head][rest] = value
        elif head in DICT_FIELDS:
            data[head].update(value)
        else:
            data[head] = None if value == "none" and head not in ("labels",) else value
    if "local_lr" in data and isinstance(data["local_lr"], int):
        data["local_lr"] = float(data["local_lr"])
    data["attack_options"].update(per_attack.get(data.get("attack", Scenario.attack), {}))
    return scenario_from_dict(data)


@functools.cache
def _default_config() -> dict[str, Any]:
    """The config of ``Scenario()`` (read-only; computed once, not once per planned run)."""
    return scenario_config(Scenario())


def _layers(doc: dict[str, Any], problems: list[str]) -> list[tuple[str, dict[str, list[Any]], dict]]:
    """Each preset (or the single default one) as ``(name, axes, per_attack)``."""
    for name in doc:
        if name not in TABLES:
            problems.append(f"unknown table or key [{name}]; a grid file has only "
                            f"{', '.join(f'[{t}]' for t in TABLES)}")
    sweep = doc.get("sweep", {})
    for name in sweep if isinstance(sweep, dict) else ():
        if name not in SWEEP_KEYS:
            problems.append(f"[sweep]: unknown key {name!r}; valid: {', '.join(SWEEP_KEYS)}")
    for t in ("sweep", "base", "grid", "per_attack", "presets"):
        if t in doc and not isinstance(doc[t], dict):
            problems.append(f"[{t}] must be a table")
            doc = {**doc, t: {}}
    base = _flatten(doc.get("base", {}), "[base]", problems, lists=False)
    grid = _flatten(doc.get("grid", {}), "[grid]", problems, lists=True)
    per_attack = _per_attack(doc.get("per_attack", {}), "per_attack", problems)
    axes: dict[str, list[Any]] = {k: [v] for k, v in base.items()}
    axes.update(grid)
    check_values(axes, "[base]/[grid]", problems)
    presets = doc.get("presets", {})
    if not presets:
        return [("default", axes, per_attack)]
    out = []
    for name, table in presets.items():
        where = f"[presets.{name}]"
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
            continue
        table = dict(table)
        p_grid = _flatten(table.pop("grid", {}), f"{where}.grid", problems, lists=True)
        p_attack = _per_attack(table.pop("per_attack", {}), f"{where}.per_attack", problems)
        p_base = _flatten(table, where, problems, lists=False)
        p_axes = {**axes, **{k: [v] for k, v in p_base.items()}, **p_grid}
        check_values({**{k: [v] for k, v in p_base.items()}, **p_grid}, where, problems)
        # top-level per-attack defaults yield to the options this preset sets itself
        own = {k.partition(".")[2] for k in (*p_base, *p_grid) if k.startswith("attack_options.")}
        merged = {a: {**{k: v for k, v in per_attack.get(a, {}).items() if k not in own},
                      **p_attack.get(a, {})} for a in {*per_attack, *p_attack}}
        out.append((name, p_axes, merged))
    return out


def parse_grid(text: str, *, source: str = "<grid>", max_runs: int | None = None,
               presets: list[str] | None = None) -> Grid:
    """Parse, expand and validate a grid; raise one :class:`ConfigError` listing every problem.

    Args:
        text: the TOML text.
        source: where it came from (used in messages).
        max_runs: the expansion limit (default: ``[sweep] max_runs`` or 10 000).
        presets: run only these named presets.
    """
    if len(text) > MAX_GRID_BYTES:
        raise ConfigError(f"{source} is {len(text) / 2**20:.1f} MiB, more than a grid file may be "
                          f"({MAX_GRID_BYTES // 2**20} MiB); use shorter lists (and presets)")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source} is not valid TOML: {err}; fix the file and run again") from None
    except RecursionError:
        raise ConfigError(f"{source} nests lists or tables too deeply to read; a grid nests at most "
                          f"{MAX_GRID_DEPTH} levels") from None
    if _depth(doc) > MAX_GRID_DEPTH:
        raise ConfigError(f"{source} nests lists or tables {_depth(doc)} levels deep; a grid nests at most "
                          f"{MAX_GRID_DEPTH} (presets.NAME.grid.defense = [[chain], ...] is 6)")
    if not any(doc.get(t) for t in ("base", "grid", "per_attack", "presets")):
        raise ConfigError(f"{source} sets no options, so it would plan one run of gradleak's defaults; "
                          'write at least [base] attack = "ig" (and dataset, model, ...)')
    problems: list[str] = []
    layers = _layers(doc, problems)
    sweep = doc.get("sweep", {}) if isinstance(doc.get("sweep", {}), dict) else {}
    limit = max_runs if max_runs is not None else sweep.get("max_runs", DEFAULT_MAX_RUNS)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        problems.append(f"max_runs must be a positive integer, got {limit!r}")
        limit = DEFAULT_MAX_RUNS
    if presets:
        names = [n for n, _, _ in layers]
        problems += [f"unknown preset {p!r}; this grid has: {', '.join(names)}" for p in presets
                     if p not in names]
        layers = [layer for layer in layers if layer[0] in presets]
    sizes = {name: _product_size(axes) for name, axes, _ in layers}
    total = sum(sizes.values())
    if total > limit:
        detail = "; ".join(f"{n}: " + " × ".join(f"{len(v)} {k}" for k, v in a.items() if len(v) > 1)
                           for n, a, _ in layers)
        problems.append(f"the grid expands to {total} runs, more than the limit of {limit} ({detail}); "
                        "shorten a list or raise the limit with --max-runs or [sweep] max_runs")
    runs: dict[str, PlannedRun] = {}
    memo: dict[str, list[str]] = {}
    for name, axes, per_attack in layers:
        keys = list(axes)
        # within the limit: every run; beyond it, each value of each list once (to list problems)
        combos = itertools.product(*(axes[k] for k in keys)) if total <= limit else _covering(
            {k: v[:MAX_CHECKED_VALUES] for k, v in axes.items()})
        for combo in combos:
            try:
                scenario = _resolve(dict(zip(keys, combo, strict=True)), per_attack)
            except (GradleakError, TypeError, ValueError) as err:
                problems.append(f"[presets.{name}]: {err}" if name != "default" else str(err))
                continue
            problems += [f"{name}: {p}" if name != "default" else p
                         for p in component_problems(scenario, memo)]
            key = scenario_hash(scenario)
            runs.setdefault(key, PlannedRun(key, name, scenario))
    if problems:
        unique = list(dict.fromkeys(problems))
        if len(unique) == 1:
            raise ConfigError(f"{source}: {unique[0]} (nothing was run)")
        listing = "\n".join(f"  - {p}" for p in unique)
        raise ConfigError(f"{source}: {len(unique)} problem(s), nothing was run:\n{listing}")
    return Grid(list(runs.values()), source, text, tuple(n for n, _, _ in layers))


def _depth(value: Any) -> int:
    """How deeply tables and lists nest in a parsed grid (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _covering(axes: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    """The first combination, then each other value of each axis varied alone."""
    first = [values[0] for values in axes.values()]
    out = [tuple(first)]
    for i, values in enumerate(axes.values()):
        out += [tuple(first[:i] + [v] + first[i + 1:]) for v in values[1:]]
    return out


def _product_size(axes: dict[str, list[Any]]) -> int:
    size = 1
    for values in axes.values():
        size *= len(values)
    return size


def load_grid(path: str | Path, *, max_runs: int | None = None, presets: list[str] | None = None) -> Grid:
    """Read and parse a grid file (see :func:`parse_grid`).

    Example:
        >>> load_grid("bench/suite.toml").presets  # doctest: +SKIP
        ('spear_exact_vs_b', ...)
    """
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"grid file {file} is a folder; pass the path of a TOML grid file")
    if not file.is_file():
        raise ConfigError(f"grid file {file} does not exist; pass the path of a TOML grid")
    if file.stat().st_size > MAX_GRID_BYTES:
        raise ConfigError(f"grid file {file} is {file.stat().st_size / 2**20:.1f} MiB, more than a grid file may "
                          f"be ({MAX_GRID_BYTES // 2**20} MiB); use shorter lists (and presets)")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read grid file {file} ({err}); save it as UTF-8 TOML") from None
    return parse_grid(text, source=str(file), max_runs=max_runs, presets=presets)
