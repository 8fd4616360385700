"""Label mapping: which generator class to condition on for each task label.

A conditional generator trained on other classes than the FL task's (digits 0–4 for a task on
5–9; digits for a face task) has no class that *is* the task label. The extended GIFD
(Fang et al., arXiv 2604.00955, "Enhancing Gradient Inversion Attacks in Federated Learning via
Hierarchical Feature Optimization") says in its abstract that it maps task labels to generator
classes; its method was not available to us, and the released ICCV code has no mapping at all.
**The mapping below is gradleak's own design**, not the paper's: for each restored task label
the server picks the generator class whose short latent search matches the observed gradient
best (lowest gradient loss); the attack supplies that search as ``score``.

Modes (``label_map``):

* ``"auto"``: the generator's own table (``class_labels``) when it covers every task label, else search;
* ``"search"``: search for every task label, even when the table covers it (domain shift);
* ``"none"``: no mapping — the generator's table, and for a label outside it the class with the
  same index modulo the number of classes (the naive choice that ignores what classes mean);
* a path to a JSON object ``{"task label": generator class index, ...}``.

Example:
    >>> import torch
    >>> from gradleak.generative.dcgan import ConditionalDCGAN
    >>> g = ConditionalDCGAN(num_classes=5, width=4, class_labels=[0, 1, 2, 3, 4])
    >>> score = lambda cands: (cands[:, 0] - 3).abs().float()   # class 3 fits best
    >>> classes, info = map_labels(torch.tensor([7]), g, "auto", score)
    >>> classes.tolist(), info["mapping"]
    ([3], {7: 3})
    >>> map_labels(torch.tensor([7]), g, "none", score)[0].tolist()
    [2]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from gradleak.core.errors import ConfigError, DataError
from gradleak.generative.base import Generator

log = logging.getLogger(__name__)

MODES = ("auto", "search", "none")
Score = Callable[[torch.Tensor], torch.Tensor]
"""``score(candidates (P, B) generator classes) -> (P,)`` gradient losses (lower is better)."""


def parse_label_map(spec: str | Path | Mapping[int, int]) -> str | dict[int, int]:
    """A mode name, or the mapping read from a JSON file / given as a dict (keys and values ints).

    Raises:
        ConfigError: not a mode and not an existing file, or entries that are not integers.
        DataError: the file is not valid JSON.
    """
    if isinstance(spec, Mapping):
        items = spec.items()
    elif str(spec) in MODES:
        return str(spec)
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"label_map must be one of {', '.join(MODES)} or a path to a JSON file "
                              f"mapping task label to generator class, got {str(spec)!r} (no such file)")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read label map {path}: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"label map {path} must hold a JSON object like {{\"5\": 0, \"6\": 1}}")
        items = data.items()
    try:
        return {int(k): int(v) for k, v in items}
    except (TypeError, ValueError):
        raise ConfigError("label map entries must be integers: task label -> generator class index, "
                          f"got {dict(items)!r}") from None


def naive_classes(labels: torch.Tensor, generator: Generator) -> torch.Tensor:
    """The generator's own table for labels it knows; the label modulo ``num_classes`` otherwise."""
    table = {int(c): k for k, c in enumerate(generator.class_labels)}
    return torch.tensor([table.get(int(v), int(v) % generator.num_classes) for v in labels.tolist()],
                        dtype=torch.long)


def search_classes(labels: torch.Tensor, generator: Generator, score: Score,
                   start: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[int, list[float]]]:
    """Greedy search: for each distinct task label in turn, try every generator class at its positions.

    Args:
        labels: task labels ``(B,)``.
        generator: the prior (its ``num_classes`` candidates).
        score: the short latent search, ``(P, B)`` candidate classes -> ``(P,)`` losses.
        start: classes for the positions not yet searched (default :func:`naive_classes`).

    Returns:
        classes ``(B,)`` and, per task label, the loss of every candidate class.
    """
    classes = (naive_classes(labels, generator) if start is None else start).clone()
    scores: dict[int, list[float]] = {}
    for label in sorted({int(v) for v in labels.tolist()}):
        at = labels == label
        cands = classes.expand(generator.num_classes, -1).clone()
        cands[:, at] = torch.arange(generator.num_classes)[:, None]
        losses = torch.nan_to_num(score(cands).detach(), nan=float("inf"))
        classes[at] = int(losses.argmin())
        scores[label] = [round(float(v), 6) for v in losses]
        log.info("label map: task label %d -> generator class %d (losses %s)", label, int(classes[at][0]),
                 scores[label])
    return classes, scores


def map_labels(labels: torch.Tensor, generator: Generator, mode: str | Path | Mapping[int, int],
               score: Score) -> tuple[torch.Tensor, dict[str, Any]]:
    """Generator classes ``(B,)`` for task labels ``(B,)``, and what was done (for ``info``).

    Args:
        labels: restored (or known) task labels.
        generator: the prior.
        mode: ``auto``, ``search``, ``none``, a JSON file path or a dict (see the module docstring).
        score: the short latent search used by ``auto`` / ``search``.

    Raises:
        ConfigError: a mapping that misses a task label or names a class the generator lacks.
    """
    spec = parse_label_map(mode)
    labels = labels.reshape(-1).long()
    known = {int(c) for c in generator.class_labels}
    if isinstance(spec, dict):
        missing = sorted({int(v) for v in labels.tolist()} - set(spec))
        bad = sorted(v for v in spec.values() if not 0 <= v < generator.num_classes)
        if missing or bad:
            raise ConfigError(f"label map misses task label(s) {missing} or names class(es) {bad} outside "
                              f"0..{generator.num_classes - 1}; map every label to a generator class index")
        classes, how, scores = torch.tensor([spec[int(v)] for v in labels.tolist()]), "file", {}
    elif spec == "none" or (spec == "auto" and {int(v) for v in labels.tolist()} <= known):
        classes, how, scores = naive_classes(labels, generator), "table" if spec == "auto" else "none", {}
    else:
        classes, scores = search_classes(labels, generator, score)
        how = "search"
    mapping = {int(a): int(b) for a, b in zip(labels.tolist(), classes.tolist())}
    return classes.long(), {"label_map": how, "mapping": mapping, "class_losses": scores}
