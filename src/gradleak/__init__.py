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
"""

from gradleak.core.registry import (
    create_attack,
    create_defense,
    list_attacks,
    list_datasets,
    list_defenses,
    list_models,
)
from gradleak.core.types import ClientUpdate, GroundTruth, LocalTraining, Reconstruction
from gradleak.core.version import __version__
from gradleak.data import Dataset, load_dataset, load_split, load_splits, sample_batch
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.metrics import evaluate
from gradleak.models import build_model

__all__ = [
    "__version__", "ClientUpdate", "Dataset", "GroundTruth", "LocalTraining", "Reconstruction", "build_model",
    "create_attack", "create_defense", "evaluate", "fedavg_update", "fedsgd_update", "list_attacks",
    "list_datasets", "list_defenses", "list_models", "load_dataset", "load_split", "load_splits", "sample_batch",
]
