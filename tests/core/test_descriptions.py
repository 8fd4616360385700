"""``gradleak list``'s descriptions of built-ins stay the first lines of their docstrings."""

from __future__ import annotations

import pytest

from gradleak.core.builtins import BUILTINS
from gradleak.core.descriptions import DESCRIPTIONS
from gradleak.core.doctext import first_line
from gradleak.core.registry import ATTACKS, DATASETS, DEFENSES, LABEL_METHODS, MODELS

KINDS = {"attacks": ("attack", ATTACKS), "defenses": ("defense", DEFENSES), "datasets": ("dataset", DATASETS),
         "models": ("model", MODELS), "labels": ("label method", LABEL_METHODS)}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_builtin_has_its_docstrings_first_line(kind):
    builtin, registry = KINDS[kind]
    assert set(DESCRIPTIONS[kind]) == set(BUILTINS[builtin]), "add or remove the entry in core/descriptions.py"
    for name, line in DESCRIPTIONS[kind].items():
        want = first_line(registry.get(name).__doc__)
        assert want and line == want, f"{kind} {name!r}: update core/descriptions.py to {want!r}"
