"""gradleak: how much private training data leaks from federated-learning client updates.

Example (the six-line API):
    >>> import gradleak as gl
    >>> ds = gl.load_split("digits", {}, "attack")   # never a training or validation image
    >>> truth = gl.sample_batch(ds, 1, seed=0)
    >>> model = gl.build_model("convnet", shape=ds.shape, num_classes=ds.num_classes, seed=0)
    >>> update = gl.fedsgd_update(model, truth.inputs, truth.labels)
    >>> rec = gl.create_attack("ig", steps=20).run(model, update, shape=ds.shape)
    >>> sorted(gl.evaluate(rec, truth))[:3]
    ['exact_fraction', 'label_accuracy', 'lpips']

``import gradleak`` imports nothing heavy: every name below is loaded on first use (PEP 562), so
the command line answers ``gradleak --help`` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradleak.core.version import __version__

_LAZY = {
    "create_attack": "gradleak.core.registry", "create_defense": "gradleak.core.registry",
    "list_attacks": "gradleak.core.registry", "list_datasets": "gradleak.core.registry",
    "list_defenses": "gradleak.core.registry", "list_models": "gradleak.core.registry",
    "ClientUpdate": "gradleak.core.types", "GroundTruth": "gradleak.core.types",
    "LocalTraining": "gradleak.core.types", "Reconstruction": "gradleak.core.types",
    "resolve_device": "gradleak.core.device",
    "Dataset": "gradleak.data", "load_dataset": "gradleak.data", "sample_batch": "gradleak.data",
    "load_split": "gradleak.data", "load_splits": "gradleak.data",
    "fedavg_update": "gradleak.fl", "fedsgd_update": "gradleak.fl",
    "evaluate": "gradleak.metrics",
    "build_model": "gradleak.models",
}
"""Public name → the module it lives in (imported the first time the name is used)."""

__all__ = [
    "__version__", "ClientUpdate", "Dataset", "GroundTruth", "LocalTraining", "Reconstruction", "build_model",
    "create_attack", "create_defense", "evaluate", "fedavg_update", "fedsgd_update", "list_attacks",
    "list_datasets", "list_defenses", "list_models", "load_dataset", "load_split", "load_splits",
    "resolve_device", "sample_batch",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from gradleak.core.device import resolve_device
    from gradleak.core.registry import (
        create_attack,
        create_defense,
        list_attacks,
        list_datasets,
        list_defenses,
        list_models,
    )
    from gradleak.core.types import ClientUpdate, GroundTruth, LocalTraining, Reconstruction
    from gradleak.data import Dataset, load_dataset, load_split, load_splits, sample_batch
    from gradleak.fl import fedavg_update, fedsgd_update
    from gradleak.metrics import evaluate
    from gradleak.models import build_model


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gradleak' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    """The public names and the subpackages already imported (not ``importlib``, ``Any``, ...)."""
    loaded = {k for k, v in globals().items() if getattr(v, "__name__", "").startswith("gradleak.")}
    return sorted(set(__all__) | loaded)
