"""Training before an attack reports its progress, batch by batch, ending at the true total."""

from __future__ import annotations

from gradleak.data import Dataset
from gradleak.experiment.model_state import train_model
from gradleak.models import build_model


def test_training_progress_counts_every_mini_batch(digits):
    data = Dataset("digits", digits.inputs[:130], digits.labels[:130], digits.num_classes)
    calls = []
    model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0, widths=16)
    train_model(model, data, epochs=2, seed=0, progress=lambda s, t, loss: calls.append((s, t, loss)))
    # 130 examples in batches of 64: 64, 64, 2 → 3 batches per epoch, 6 in all
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5, 6] and {c[1] for c in calls} == {6}
    assert all(c[2] > 0 for c in calls)
