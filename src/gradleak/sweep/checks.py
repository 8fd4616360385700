"""What a grid's planned runs are checked for before anything runs: what a real run would refuse.

A dry run (``gradleak sweep --dry-run``) and a real sweep check the same things: every scenario
field's type, the scenario itself (:meth:`~gradleak.experiment.Scenario.validate`), the attack
built with its options, the dataset's options, the model built on the ``meta`` device for the
dataset's shape (so a width of -4 or a model larger than memory is refused now, not in every
run), the defenses and the label method. Checks are memoised by the settings they read.

Example:
    >>> from gradleak.experiment import Scenario
    >>> component_problems(Scenario(attack="ig", dataset="digits", model="convnet",
    ...                             model_options={"width": -4}), {})
    ["model 'convnet': width must be between 1 and 1000000, got -4 — e.g. width=16 (the default)"]
"""

from __future__ import annotations

import functools
import json
import typing
from dataclasses import asdict, fields
from typing import Any

from gradleak.core.errors import GradleakError
from gradleak.experiment.scenario import Scenario, build_attack

DICT_FIELDS = ("attack_options", "model_options", "dataset_options")


def scenario_config(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain JSON-able data (defenses as a list)."""
    data = asdict(scenario)
    data["defenses"] = list(data["defenses"])
    return data


@functools.cache
def field_types() -> dict[str, Any]:
    """Scenario field name → its type annotation."""
    hints = typing.get_type_hints(Scenario)
    return {f.name: hints[f.name] for f in fields(Scenario)}


def _type_problem(key: str, value: Any, kind: Any) -> str | None:
    """Why ``value`` does not fit the Scenario field type ``kind`` (None when it fits)."""
    args = typing.get_args(kind)
    if value is None or value == "none":
        return None if type(None) in args else f"{key} cannot be empty/none"
    base = next((a for a in args if a is not type(None)), kind) if args and type(None) in args else kind
    origin = typing.get_origin(base) or base
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
        tuple: isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
        dict: isinstance(value, dict),
    }.get(origin, True)
    return None if ok else f"{key} must be {getattr(origin, '__name__', origin)}, got {value!r}"


def check_values(axes: dict[str, list[Any]], where: str, problems: list[str]) -> None:
    """Append a problem for every value of a Scenario field with the wrong type."""
    types = field_types()
    for key, values in axes.items():
        if key in types:
            for value in values:
                problem = _type_problem(key, value, types[key])
                if problem:
                    problems.append(f"{where}: {problem}")


def _dataset_facts(scenario: Scenario) -> tuple[list[int], int] | None:
    """The dataset's input shape and classes as its loader declares them (no data is read);
    ``None`` when they depend on the data (``imagefolder``)."""
    from gradleak.core.registry import DATASETS

    factory = DATASETS.get(scenario.dataset)
    shape, classes = getattr(factory, "shape", None), getattr(factory, "classes", None)
    if shape is None or classes is None:
        return None
    size = scenario.dataset_options.get("size")
    if isinstance(size, int) and not isinstance(size, bool):
        shape = (shape[0], size, size)
    if scenario.dataset_options.get("coarse") is True:
        classes = 20
    return list(shape), int(classes)


def _check_model(scenario: Scenario) -> None:
    from gradleak.core.registry import MODELS, check_kwargs
    from gradleak.experiment.user_model import check_model, is_user_model
    from gradleak.models import check_model_size

    if is_user_model(scenario.model):  # FILE.py:FACTORY: the file, the factory and its options
        check_model(scenario.model, scenario.model_options)
        facts = _dataset_facts(scenario)
        if facts is not None:
            _build_user_model_on_meta(scenario, facts)
        return
    options = check_kwargs(MODELS.get(scenario.model), scenario.model_options, f"model {scenario.model!r}")
    facts = _dataset_facts(scenario)
    if facts is not None:
        check_model_size(scenario.model, shape=facts[0], num_classes=facts[1], **options)


def _build_user_model_on_meta(scenario: Scenario, facts: tuple[list[int], int]) -> None:
    """Call the user's factory on the ``meta`` device (no memory, no data): a factory that raises
    or returns no model fails the dry run, not every run. A factory that computes with tensors
    while it builds cannot run on ``meta``; it is then only checked when a run builds it."""
    import torch

    from gradleak.core.errors import ConfigError
    from gradleak.experiment.user_model import build_user_model

    try:
        with torch.device("meta"):
            build_user_model(scenario.model, shape=facts[0], num_classes=facts[1], seed=scenario.seed,
                             options=scenario.model_options)
    except ConfigError as err:
        if "meta" not in str(err):
            raise


def component_problems(scenario: Scenario, memo: dict[str, list[str]]) -> list[str]:
    """Everything wrong with one scenario, checked part by part and memoised by the part's settings."""
    from gradleak.core.registry import DATASETS, LABEL_METHODS
    from gradleak.defenses.base import build_defenses
    from gradleak.defenses.pipeline import check_composition

    config = scenario_config(scenario)
    checks = {
        "scenario": (lambda: scenario.validate(),
                     [k for k in config if k != "attack_options"]),
        "attack": (lambda: build_attack(scenario), ["attack", "attack_options", "attack_preset", "labels", "seed"]),
        "dataset": (lambda: DATASETS.get(scenario.dataset), ["dataset"]),
        "model": (lambda: _check_model(scenario), ["model", "model_options", "dataset", "dataset_options"]),
        "defenses": (lambda: check_composition(build_defenses(scenario.defenses, seed=scenario.seed)),
                     ["defenses"]),
    }
    if scenario.labels not in ("own", "known", "restore", "auto"):
        checks["labels"] = (lambda: LABEL_METHODS.get(scenario.labels), ["labels"])
    found = []
    for name, (check, keys) in checks.items():
        memo_key = name + json.dumps({k: config[k] for k in keys}, sort_keys=True, default=str)
        if memo_key not in memo:
            try:
                check()
                memo[memo_key] = []
            except (GradleakError, TypeError, ValueError) as err:
                memo[memo_key] = [str(err)]
        found += memo[memo_key]
    return list(dict.fromkeys(found))
