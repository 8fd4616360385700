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

import io
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from gradleak.core.device import resolve_device, truth_to
from gradleak.core.results import RunResult
from gradleak.core.types import ClientUpdate, GroundTruth, Progress, Reconstruction
from gradleak.core.version import __version__
from gradleak.data import sample_batch
from gradleak.defenses.adaptive import adaptive_transform
from gradleak.defenses.pipeline import Defended, client_seed, defend, defense_metrics
from gradleak.experiment.model_state import prepare_model
from gradleak.experiment.runfolder import check_out_dir, image_grid, prepare_out_dir, save_tensors, write_json
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
    device: Any = None,
) -> RunResult:
    """Run one scenario; write the run folder when ``out_dir`` is given; return the result.

    ``device``: where the client simulation and the attack run (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``, ``mps``; default the CPU); the result is on the CPU either way.
    """
    if out_dir is not None:
        check_out_dir(out_dir, overwrite=overwrite)
    run = prepare_run(scenario, device=device)
    rec = run.attack.run(run.model, run.update, shape=run.shape, progress=progress)
    return finish_run(run, rec, out_dir, overwrite=overwrite, save_tensor_file=save_tensor_file)


@dataclass
class PreparedRun:
    """Everything before the attack: the attack, the model and update it sees (on ``device``), the truth."""

    scenario: Scenario
    attack: Any
    model: torch.nn.Module
    update: ClientUpdate
    defended: Defended
    model_info: dict[str, Any] | None
    shape: tuple[int, ...]
    device: torch.device


def prepare_run(scenario: Scenario, *, device: Any = None) -> PreparedRun:
    """Validate, build the attack, prepare the model, sample the truth and simulate the (defended) client."""
    scenario.validate()
    dev = resolve_device("cpu" if device is None else device)
    attack = build_attack(scenario)
    # untrained: the whole dataset; trained or a checkpoint: the held-out split (model_info says so)
    model, dataset, model_info = prepare_model(
        scenario.model, scenario.model_options, scenario.dataset, scenario.dataset_options,
        seed=scenario.seed, model_state=scenario.model_state, checkpoint=scenario.checkpoint)
    model = model.to(dev)
    truth = truth_to(sample_batch(dataset, scenario.batch_size, seed=scenario.seed, label_mode=scenario.label_mode),
                     dev)
    model.train(scenario.mode == "train")
    leak, share = scenario.labels == "known", scenario.share_buffers

    def client_update(m: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, trainer: Any) -> Any:
        if scenario.protocol == "fedsgd":
            return fedsgd_update(m, inputs, labels, mode=scenario.mode, labels_leak=leak,
                                 share_buffers=share, trainer=trainer)
        return fedavg_update(m, inputs, labels, scenario.local_training(), mode=scenario.mode,
                             seed=scenario.seed, labels_leak=leak, share_buffers=share, trainer=trainer)

    defended = defend(model, truth, scenario.defenses, client_update, seed=scenario.seed,
                      sample=lambda k: truth_to(sample_batch(dataset, scenario.batch_size,
                                                             label_mode=scenario.label_mode,
                                                             seed=client_seed(scenario.seed, k)), dev))
    if scenario.adaptive:
        attack = build_attack(scenario, transform=adaptive_transform(defended.model, defended.update))
    return PreparedRun(scenario, attack, defended.model, defended.update, defended, model_info,
                       tuple(dataset.shape), dev)


def finish_run(run: PreparedRun, rec: Reconstruction, out_dir: str | Path | None = None, *,
               overwrite: bool = False, save_tensor_file: bool = False) -> RunResult:
    """Score the reconstruction against the truth (on the CPU) and write the run folder when asked."""
    truth = truth_to(run.defended.truth, torch.device("cpu"))
    out = prepare_out_dir(out_dir, overwrite=overwrite) if out_dir is not None else None
    scores = evaluate(rec, truth)
    metrics = {k: scores[k] for k in SUMMARY_METRICS}
    metrics.update(defense_metrics(run.defended, scores))
    result = RunResult(scenario=asdict(run.scenario), metrics=metrics, per_image=scores["per_image"],
                       matching=list(scores["matching"]), reconstruction=rec, truth=truth,
                       seconds=rec.seconds, out_dir=str(out) if out is not None else None,
                       model_state=run.model_info)
    if out is not None:
        write_run_folder(out, result, save_tensor_file=save_tensor_file)
    return result


def reconstruction_png(rec: Reconstruction, truth: GroundTruth | None, matching: list[int] | None) -> bytes:
    """The PNG of the truth (top) above the matched reconstruction, or the reconstruction alone."""
    rows = [rec.inputs] if truth is None else [truth.inputs, rec.inputs[list(matching or [])]]
    buffer = io.BytesIO()
    image_grid(rows).save(buffer, format="png")
    return buffer.getvalue()


def write_run_folder(out: Path, result: RunResult, *, save_tensor_file: bool = False) -> None:
    """Write ``config.json``, ``metrics.json``, ``reconstruction.png`` (and tensors) of a run."""
    rec, truth = result.reconstruction, result.truth
    config = {"scenario": result.scenario, "device": rec.info.get("device", "cpu"), "versions": {
        "gradleak": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(out / "config.json", config)
    write_json(out / "metrics.json", {**result.summary(), "per_image": result.per_image,
                                      "matching": result.matching, "info": rec.info,
                                      "loss_history": rec.loss_history})
    (out / "reconstruction.png").write_bytes(reconstruction_png(rec, truth, result.matching))
    if save_tensor_file and truth is not None:
        order = result.matching
        tensors = {"truth_inputs": truth.inputs, "truth_labels": truth.labels,
                   "reconstruction": rec.inputs[order]}
        if rec.labels is not None:
            tensors["reconstructed_labels"] = rec.labels
        save_tensors(out / "tensors.safetensors", tensors)
