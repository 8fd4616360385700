"""One scenario end to end: truth → model → client update → attack → metrics → run folder.

:func:`run_scenario` returns a typed :class:`~gradleak.core.results.RunResult` (everything in
memory); the run folder, when asked for, is written from it.

Example:
    >>> from gradleak.experiment import Scenario, run_scenario
    >>> s = Scenario(attack="ig", dataset="digits", model="convnet", attack_options={"steps": 5})
    >>> result = run_scenario(s)
    >>> sorted(result.metrics)[:2]
    ['exact_fraction', 'label_accuracy']
"""

from __future__ import annotations

import contextlib
import io
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from gradleak.core.results import RunResult
from gradleak.core.types import GroundTruth, Progress, Reconstruction
from gradleak.core.version import __version__
from gradleak.data import sample_batch
from gradleak.defenses.adaptive import adaptive_transform
from gradleak.defenses.pipeline import client_seed, defend, defense_metrics
from gradleak.experiment.model_state import prepare_model
from gradleak.experiment.outputs import RunFolder
from gradleak.experiment.runfolder import RUN_FILES, image_grid, json_text, tensor_bytes
from gradleak.experiment.scenario import Scenario, build_attack
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.metrics import evaluate

SUMMARY_METRICS = ("mse", "psnr", "ssim", "lpips", "label_accuracy", "exact_fraction")
"""The scores every run reports (defense facts such as ``epsilon`` are added when present)."""


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    save_tensor_file: bool = False,
) -> RunResult:
    """Run one scenario; write the run folder when ``out_dir`` is given; return the result.

    Everything is checked before any work: the scenario, the attack's options and the run folder
    (which is staged at once, so an unwritable path fails now, not after the attack). The folder
    appears complete at the end or not at all (an error or Ctrl-C removes the staging).
    """
    scenario.validate()
    attack = build_attack(scenario)
    folder = RunFolder(out_dir, overwrite=overwrite, files=RUN_FILES) if out_dir is not None else None
    with folder if folder is not None else contextlib.nullcontext():
        result = _run(scenario, attack, progress)
        if folder is not None:
            result.out_dir = str(folder.path)
            write_run_folder(folder, result, save_tensor_file=save_tensor_file)
            folder.commit()
    return result


def _run(scenario: Scenario, attack: Any, progress: Progress | None) -> RunResult:
    # untrained: the whole dataset; trained or a checkpoint: the held-out split (model_info says so)
    model, dataset, model_info = prepare_model(
        scenario.model, scenario.model_options, scenario.dataset, scenario.dataset_options,
        seed=scenario.seed, model_state=scenario.model_state, checkpoint=scenario.checkpoint)
    truth = sample_batch(dataset, scenario.batch_size, seed=scenario.seed, label_mode=scenario.label_mode)
    model.train(scenario.mode == "train")
    leak, share = scenario.labels == "known", scenario.share_buffers

    def client_update(m: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, trainer: Any) -> Any:
        if scenario.protocol == "fedsgd":
            return fedsgd_update(m, inputs, labels, mode=scenario.mode, labels_leak=leak,
                                 share_buffers=share, trainer=trainer)
        return fedavg_update(m, inputs, labels, scenario.local_training(), mode=scenario.mode,
                             seed=scenario.seed, labels_leak=leak, share_buffers=share, trainer=trainer)

    defended = defend(model, truth, scenario.defenses, client_update, seed=scenario.seed,
                      sample=lambda k: sample_batch(dataset, scenario.batch_size,
                                                    label_mode=scenario.label_mode,
                                                    seed=client_seed(scenario.seed, k)))
    model, update, truth = defended.model, defended.update, defended.truth
    if scenario.adaptive:
        attack = build_attack(scenario, transform=adaptive_transform(model, update))
    rec = attack.run(model, update, shape=dataset.shape, progress=progress)
    scores = evaluate(rec, truth)
    metrics = {k: scores[k] for k in SUMMARY_METRICS}
    metrics.update(defense_metrics(defended, scores))
    return RunResult(scenario=asdict(scenario), metrics=metrics, per_image=scores["per_image"],
                     matching=list(scores["matching"]), reconstruction=rec, truth=truth,
                     seconds=rec.seconds, out_dir=None, model_state=model_info)


def reconstruction_png(rec: Reconstruction, truth: GroundTruth | None, matching: list[int] | None) -> bytes:
    """The PNG of the truth (top) above the matched reconstruction, or the reconstruction alone."""
    rows = [rec.inputs] if truth is None else [truth.inputs, rec.inputs[list(matching or [])]]
    buffer = io.BytesIO()
    image_grid(rows).save(buffer, format="png")
    return buffer.getvalue()


def write_run_folder(folder: RunFolder, result: RunResult, *, save_tensor_file: bool = False) -> None:
    """Stage ``config.json``, ``metrics.json``, ``reconstruction.png`` (and tensors) of a run."""
    rec, truth = result.reconstruction, result.truth
    config = {"scenario": result.scenario, "versions": {
        "gradleak": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    folder.write_bytes("config.json", json_text(config).encode())
    folder.write_bytes("metrics.json", json_text({**result.summary(), "per_image": result.per_image,
                                                  "matching": result.matching, "info": rec.info,
                                                  "loss_history": rec.loss_history}).encode())
    folder.write_bytes("reconstruction.png", reconstruction_png(rec, truth, result.matching))
    if save_tensor_file and truth is not None:
        order = result.matching
        tensors = {"truth_inputs": truth.inputs, "truth_labels": truth.labels,
                   "reconstruction": rec.inputs[order]}
        if rec.labels is not None:
            tensors["reconstructed_labels"] = rec.labels
        folder.write_bytes("tensors.safetensors", tensor_bytes(tensors))
