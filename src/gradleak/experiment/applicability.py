"""Which registered attacks and label methods apply to a model and an update, and why not.

:func:`applicability` asks every attack its own ``check(model, update)`` (the typed
``Problem``s it would raise), adds what ``check`` cannot see without running — whether the
labels an attack needs can actually be restored, whether a generator prior fits the model —
and runs every label method, collecting its ``NotApplicableError`` reasons. Nothing is
attacked; the whole report takes seconds.

Example:
    >>> import torch
    >>> from gradleak.fl import fedsgd_update
    >>> from gradleak.models import build_model
    >>> model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0, widths=50)
    >>> update = fedsgd_update(model, torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 3]))
    >>> report = applicability(model, update, shape=(1, 8, 8))
    >>> spear = next(a for a in report["attacks"] if a["name"] == "spear")
    >>> spear["applies"], "fedavg-unrolled" in [a["name"] for a in report["attacks"] if not a["applies"]]
    (True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gradleak.attacks.describe import attack_requirements, requirement_summary
from gradleak.attacks.describe import capabilities as declared
from gradleak.core.doctext import first_line, paragraph
from gradleak.core.errors import GradleakError
from gradleak.core.registry import ATTACKS, LABEL_METHODS
from gradleak.core.types import ClientUpdate
from gradleak.experiment.scenario import make_attack
from gradleak.labels.resolve import resolve_labels
from gradleak.models.layers import has_batchnorm, last_linear


def model_facts(model: nn.Module, update: ClientUpdate, shape: Sequence[int]) -> dict[str, Any]:
    """What matters to the attacks about a model and update, in a few words each."""
    first = next(((n, type(m).__name__) for n, m in model.named_modules()
                  if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    acts = sorted({type(m).__name__ for m in model.modules()
                   if isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU, nn.SiLU, nn.ELU))})
    last = last_linear(model)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "first_weighted_layer": f"{first[0]} ({first[1]})" if first else None,
            "activations": acts, "batchnorm": has_batchnorm(model), "mode": "train" if model.training else "eval",
            "last_linear": f"{last[0]} ({last[1].in_features}→{last[1].out_features})" if last else None,
            "update": update.kind, "num_examples": update.num_examples, "labels_in_update": update.labels is not None,
            "defenses": list(update.defenses), "shape": list(shape)}


def _attack_row(name: str, model: nn.Module, update: ClientUpdate, shape: Sequence[int],
                labels: str) -> dict[str, Any]:
    cls = ATTACKS.get(name)
    caps = declared(cls)
    row: dict[str, Any] = {"name": name, "summary": first_line(cls.__doc__), "requires": attack_requirements(cls),
                           "capabilities": caps, "assumes": requirement_summary(caps)}
    try:
        attack = make_attack(name, {}, seed=0, labels=labels)
        problems = [{"kind": p.kind, "message": p.message} for p in attack.check(model, update)]
    except GradleakError as err:
        row.update(applies=False, problems=[{"kind": "not_applicable", "message": str(err)}])
        return row
    if not problems and caps["needs_labels"] and update.labels is None:
        try:
            restored, how = resolve_labels(model, update, getattr(attack, "labels", "restore") or "restore",
                                           shape=shape)
            row["labels"] = {"method": how, "labels": sorted(restored.tolist())}
        except GradleakError as err:
            problems.append({"kind": "not_applicable", "message": f"its labels cannot be restored: {err}"})
    if not problems and caps["needs_prior"]:
        problems += _prior_problems(attack, model, shape)
    row.update(applies=not problems, problems=problems)
    return row


def _prior_problems(attack: Any, model: nn.Module, shape: Sequence[int]) -> list[dict[str, str]]:
    from gradleak.generative import check_compatible, load_generator

    try:
        found = last_linear(model)
        check_compatible(load_generator(attack.generator), shape, found[1].out_features if found else None)
    except GradleakError as err:
        return [{"kind": "not_applicable", "message": f"its generator prior does not fit: {err}"}]
    return []


def _label_row(name: str, model: nn.Module, update: ClientUpdate, shape: Sequence[int]) -> dict[str, Any]:
    method = LABEL_METHODS.get(name)
    row: dict[str, Any] = {"name": name, "summary": first_line(method.__doc__),
                           "requires": paragraph(method.__doc__, "Needs")}
    try:
        with torch.no_grad():
            restored = method(model, update, shape=shape)
        row.update(applies=True, labels=sorted(int(v) for v in restored.tolist()), reasons=[])
    except GradleakError as err:
        reasons = getattr(err, "reasons", None) or [str(err)]
        row.update(applies=False, labels=None, reasons=list(reasons))
    return row


def applicability(model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
                  labels: str = "auto") -> dict[str, Any]:
    """Every registered attack and label method on ``(model, update)``: whether it applies and why not.

    Args:
        model: the model the server holds (in the client's mode).
        update: the update the server received.
        shape: the client's input shape ``(C, H, W)``.
        labels: the attacks' label setting (``auto``: the update's labels, else restored).

    Returns:
        ``model`` (facts about the model and update), ``attacks`` and ``label_methods`` — one
        dict per entry with ``applies`` and the reasons it does not.
    """
    return {"model": model_facts(model, update, shape),
            "attacks": [_attack_row(n, model, update, shape, labels) for n in ATTACKS.names()],
            "label_methods": [_label_row(n, model, update, shape) for n in LABEL_METHODS.names()]}
