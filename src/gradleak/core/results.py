"""Typed results that cross layers: why an attack cannot run, and what one run produced.

Example:
    >>> p = Problem("not_applicable", "the model has no nn.Linear layer")
    >>> str(p), p.kind
    ('the model has no nn.Linear layer', 'not_applicable')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gradleak.core.types import GroundTruth, Reconstruction

ProblemKind = Literal["update_mismatch", "not_applicable"]


@dataclass(frozen=True)
class Problem:
    """One reason an attack or method cannot run on a model and update.

    Args:
        kind: ``update_mismatch`` (the update's tensors do not fit the model: names, shapes,
            finiteness) or ``not_applicable`` (the attack's own requirements are not met).
        message: what is wrong and how to fix it.
    """

    kind: ProblemKind
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class RunResult:
    """What one scenario run produced, in memory (the run folder holds the same, on disk).

    Args:
        scenario: the scenario as a plain dict (as in ``config.json``).
        metrics: the summary scores (``psnr``, ``ssim``, ``mse``, ``lpips``, ``label_accuracy``,
            ``exact_fraction``, plus defense facts such as ``epsilon``).
        per_image: per matched pair, the scores of that image.
        matching: ``matching[i]`` is the reconstruction matched to truth ``i``.
        reconstruction: the attack's output.
        truth: what the reconstruction is scored against (``None`` for a saved update).
        seconds: the attack's wall-clock time.
        out_dir: the run folder, when one was written.
        model_state: how the model was trained or loaded (``None`` for an untrained model).
        split: the dataset split the scored batch came from (``attack``, or ``validation``).
        indices: the batch's positions in the dataset that split was cut from.
        preset: the attack's hyper-parameter preset (``default``, ``paper``, ...).
        hyperparameters: every option of the attack as it ran (preset + overrides + defaults).
        assumptions: what the run assumed the server knows (``experiment/assumptions.py``).
        fit: how well the reconstruction explains the update (``gradleak.experiment.fit``):
            ``cosine_distance``, ``relative_l2``, ``residual``, ``poor`` and ``warning``.
    """

    scenario: dict[str, Any]
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]]
    matching: list[int]
    reconstruction: Reconstruction
    truth: GroundTruth | None
    seconds: float
    out_dir: str | None = None
    model_state: dict[str, Any] | None = None
    fit: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    indices: list[int] | None = None
    preset: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The short summary the CLI prints and ``--json`` emits."""
        s = self.scenario
        out = {"attack": s.get("attack"), "dataset": s.get("dataset"), "model": s.get("model"),
               "batch_size": s.get("batch_size"), "protocol": s.get("protocol"), "seed": s.get("seed"),
               "defenses": list(s.get("defenses") or []), "labels": s.get("labels"),
               "seconds": self.seconds, "metrics": dict(self.metrics), "out_dir": self.out_dir,
               "adaptive": s.get("adaptive", False), "split": self.split, "indices": self.indices,
               "preset": self.preset, "hyperparameters": self.hyperparameters,
               "assumptions": list(self.assumptions),
               "labels_from": self.reconstruction.info.get("labels_from")}
        if self.model_state is not None:
            out["model_state"] = self.model_state
        if self.fit is not None:
            out["fit"] = self.fit
        out.update(self.extra)
        return out
