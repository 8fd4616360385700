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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from gradleak.core.device import resolve_device, truth_to
from gradleak.core.results import RunResult
from gradleak.core.types import ClientUpdate, GroundTruth, Progress, Reconstruction
from gradleak.core.version import __version__
from gradleak.data import Dataset, sample_batch, sample_indices
from gradleak.defenses.adaptive import adaptive_transform
from gradleak.defenses.pipeline import Defended, client_seed, defend, defense_metrics
from gradleak.experiment.assumptions import run_assumptions
from gradleak.experiment.figure import comparison_figure
from gradleak.experiment.fit import fit_report, fit_warning
from gradleak.experiment.model_state import prepare_model
from gradleak.experiment.outputs import RunFolder
from gradleak.experiment.presets import resolved_hyperparameters
from gradleak.experiment.runfolder import RUN_FILES, image_grid, json_text, tensor_bytes
from gradleak.experiment.scenario import Scenario, build_attack
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.metrics import evaluate

SUMMARY_METRICS = ("mse", "psnr", "ssim", "lpips", "label_accuracy", "exact_fraction")
"""The scores a run reports (``lpips`` only when computed; defense facts such as ``epsilon`` when present)."""


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    save_tensor_file: bool = False,
    lpips: bool = False,
    training_progress: Progress | None = None,
    device: Any = None,
) -> RunResult:
    """Run one scenario; write the run folder when ``out_dir`` is given; return the result.

    Everything is checked before any work: the scenario, the attack's options and the run folder
    (which is staged at once, so an unwritable path fails now, not after the attack). The folder
    appears complete at the end or not at all (an error or Ctrl-C removes the staging).

    Args:
        scenario: what to run.
        out_dir: the run folder to write (``None``: keep everything in memory).
        overwrite: replace gradleak's files in an existing ``out_dir`` (one gradleak made: it
            carries the run-folder marker; any other folder is refused untouched).
        progress: ``progress(step, total, loss)`` of the attack.
        save_tensor_file: also write ``tensors.safetensors``.
        lpips: also compute LPIPS (needs the ``lpips`` package and its weights on disk;
            the metric is left out when it is not computed).
        training_progress: ``progress(batch, total, loss)`` while ``trained:EPOCHS`` trains.
        device: where the client simulation and the attack run (``auto``, ``cpu``, ``cuda``,
            ``cuda:N``, ``mps``; default the CPU); the result is on the CPU either way.
    """
    scenario.validate()
    build_attack(scenario)
    # the output folder is checked before any work starts, staged, and renamed into place at the end
    folder = RunFolder(out_dir, overwrite=overwrite, files=RUN_FILES) if out_dir is not None else None
    with folder if folder is not None else contextlib.nullcontext():
        run = prepare_run(scenario, device=device, training_progress=training_progress)
        rec = run.attack.run(run.model, run.update, shape=run.shape, progress=progress)
        return finish_run(run, rec, folder, save_tensor_file=save_tensor_file, lpips=lpips)


@dataclass
class PreparedRun:
    """Everything before the attack: the attack (adaptive when asked), the simulated client (on ``device``)."""

    scenario: Scenario
    attack: Any
    client: ClientSide
    transform: Any
    device: torch.device

    @property
    def model(self) -> torch.nn.Module:
        """The model the server attacks."""
        return self.client.defended.model

    @property
    def update(self) -> ClientUpdate:
        """The update the server sees."""
        return self.client.defended.update

    @property
    def shape(self) -> tuple[int, ...]:
        """One input's shape."""
        return tuple(self.client.dataset.shape)


def prepare_run(scenario: Scenario, *, device: Any = None, training_progress: Progress | None = None) -> PreparedRun:
    """Validate, build the attack, simulate the (defended) client on ``device`` (default the CPU)."""
    scenario.validate()
    dev = resolve_device("cpu" if device is None else device)
    attack = build_attack(scenario)
    client = simulate_client(scenario, training_progress=training_progress, device=dev)
    transform = None
    if scenario.adaptive:
        variant = scenario.adaptive if isinstance(scenario.adaptive, str) else "faithful"
        transform = adaptive_transform(client.defended.model, client.defended.update, variant=variant)
        attack = build_attack(scenario, transform=transform)
    return PreparedRun(scenario, attack, client, transform, dev)


def finish_run(run: PreparedRun, rec: Reconstruction, folder: RunFolder | None = None, *,
               save_tensor_file: bool = False, lpips: bool = False) -> RunResult:
    """Score the reconstruction against the truth (on the CPU), judge its fit, and write and commit
    the (staged) run ``folder`` when given."""
    defended = run.client.defended
    truth = truth_to(defended.truth, torch.device("cpu"))
    scores = evaluate(rec, truth, with_lpips=lpips)
    metrics = {k: scores[k] for k in SUMMARY_METRICS if k != "lpips" or scores[k] is not None}
    metrics.update(defense_metrics(defended, scores))
    on_device = replace(rec, inputs=rec.inputs.to(run.device),
                        labels=None if rec.labels is None else rec.labels.to(run.device))
    fit = fit_report(run.model, run.update, on_device, exact=run.attack.exact, transform=run.transform)
    fit["warning"] = fit_warning(fit, run.update, run.model, labels_from=rec.info.get("labels_from"))
    result = RunResult(scenario=asdict(run.scenario), metrics=metrics, per_image=scores["per_image"],
                       matching=list(scores["matching"]), reconstruction=rec, truth=truth,
                       seconds=rec.seconds, out_dir=str(folder.path) if folder is not None else None,
                       model_state=run.client.model_info, fit=fit, split=run.client.dataset.split,
                       indices=run.client.indices, preset=run.scenario.attack_preset,
                       hyperparameters=resolved_hyperparameters(run.attack),
                       assumptions=run_assumptions(run.scenario, run.model, run.update, rec))
    if folder is not None:
        write_run_folder(folder, result, save_tensor_file=save_tensor_file)
        folder.commit()
    return result


@dataclass
class ClientSide:
    """What the simulated client did: the defended update (with the model the server knows and the
    truth behind it), the data it was drawn from, how the model was trained or loaded, and the
    batch's positions in the dataset the split was cut from (``None`` when the split has none)."""

    defended: Defended
    dataset: Dataset
    model_info: dict[str, Any] | None
    indices: list[int] | None = None


def simulate_client(scenario: Scenario, *, training_progress: Progress | None = None,
                    device: Any = None) -> ClientSide:
    """Build the model, draw the client's batch and compute its (defended) update, as ``scenario`` says.

    ``device``: where the client computes (default the CPU; the model is trained and cached on the CPU).

    Example:
        >>> side = simulate_client(Scenario(dataset="digits", model="mlp", batch_size=2))
        >>> side.dataset.split, len(side.indices), side.defended.update.num_examples
        ('attack', 2, 2)
    """
    dev = resolve_device("cpu" if device is None else device)
    # the batch comes from the attack split (validation only when choosing hyper-parameters),
    # untrained models included: never from data that trained the model or a prior
    model, dataset, model_info = prepare_model(
        scenario.model, scenario.model_options, scenario.dataset, scenario.dataset_options,
        seed=scenario.seed, model_state=scenario.model_state, checkpoint=scenario.checkpoint,
        split=scenario.split, progress=training_progress)
    model = model.to(dev)
    picked = sample_indices(dataset, scenario.batch_size, seed=scenario.seed, label_mode=scenario.label_mode)
    truth = truth_to(GroundTruth(dataset.inputs[picked].clone(), dataset.labels[picked].clone()), dev)
    indices = dataset.indices[picked].tolist() if dataset.indices is not None else None
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
    return ClientSide(defended, dataset, model_info, indices)


def reconstruction_png(rec: Reconstruction, truth: GroundTruth | None, matching: list[int] | None) -> bytes:
    """The PNG of the truth (top) above the matched reconstruction, or the reconstruction alone."""
    rows = [rec.inputs] if truth is None else [truth.inputs, rec.inputs[list(matching or [])]]
    buffer = io.BytesIO()
    image_grid(rows).save(buffer, format="png")
    return buffer.getvalue()


def labels_paired(attack: str) -> bool:
    """Whether an attack's labels belong to its images (``False`` for exact attacks such as SPEAR,
    whose labels are a multiset restored separately)."""
    from gradleak.core.registry import ATTACKS

    return not getattr(ATTACKS.get(attack), "exact", False)


def run_labels(result: RunResult) -> dict[str, Any]:
    """True and recovered labels: ``recovered[i]`` is the label of the reconstruction matched to truth ``i``."""
    rec, truth = result.reconstruction, result.truth
    paired = labels_paired(result.scenario["attack"])
    out: dict[str, Any] = {"true": None if truth is None else truth.labels.tolist(), "paired": paired}
    if rec.labels is None:
        out["recovered"] = None
    elif truth is not None and paired and len(rec.labels) == len(result.matching):
        out["recovered"] = rec.labels[result.matching].tolist()
    else:
        out["recovered"] = rec.labels.tolist()
    return out


def figure_png(result: RunResult) -> bytes:
    """``reconstruction.png`` of a run folder: pairs labelled with their labels and PSNR."""
    rec, truth, s = result.reconstruction, result.truth, result.scenario
    labels = run_labels(result)
    recovered = rec.inputs if truth is None else rec.inputs[list(result.matching)]
    psnrs = result.per_image.get("psnr") if isinstance(result.per_image, dict) else None
    title = f"{s['attack']} · {s['dataset']} · {s['model']} · b={len(recovered)}"
    if result.metrics.get("psnr") is not None:
        title += f" · mean PSNR {result.metrics['psnr']:.1f} dB"
    elif result.fit and result.fit.get("cosine_distance") is not None:
        title += f" · fit: gradient cosine distance {result.fit['cosine_distance']:.3g}"
    image = comparison_figure(truth.inputs if truth is not None else None, recovered,
                              true_labels=labels["true"], recovered_labels=labels["recovered"], psnrs=psnrs,
                              title=title.replace("·", "|"), labels_paired=labels["paired"])
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()


def write_run_folder(folder: RunFolder, result: RunResult, *, save_tensor_file: bool = False) -> None:
    """Stage ``config.json``, ``metrics.json``, ``reconstruction.png`` (and tensors) of a run."""
    rec, truth = result.reconstruction, result.truth
    config = {"scenario": result.scenario, "device": rec.info.get("device", "cpu"), "split": result.split,
              "indices": result.indices, "preset": result.preset, "hyperparameters": result.hyperparameters,
              "assumptions": result.assumptions, "versions": {
        "gradleak": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    folder.write_bytes("config.json", json_text(config).encode())
    folder.write_bytes("metrics.json", json_text({**result.summary(), "labels": run_labels(result),
                                                  "per_image": result.per_image, "matching": result.matching,
                                                  "info": rec.info, "loss_history": rec.loss_history}).encode())
    folder.write_bytes("reconstruction.png", figure_png(result))
    if save_tensor_file and truth is not None:
        order = result.matching
        tensors = {"truth_inputs": truth.inputs, "truth_labels": truth.labels,
                   "reconstruction": rec.inputs[order]}
        if rec.labels is not None:
            tensors["reconstructed_labels"] = rec.labels
        folder.write_bytes("tensors.safetensors", tensor_bytes(tensors))
