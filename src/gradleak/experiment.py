"""One scenario end to end: truth → model → client update → attack → metrics → run folder.

Example:
    >>> from gradleak.experiment import Scenario, run_scenario
    >>> s = Scenario(attack="ig", dataset="digits", model="convnet", attack_options={"steps": 5})
    >>> result = run_scenario(s)
    >>> sorted(result["metrics"])[:2]
    ['exact_fraction', 'label_accuracy']
"""

from __future__ import annotations

import inspect
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradleak.attacks.base import Progress
from gradleak.attacks.common.adaptive import adaptive_transform
from gradleak.data import LABEL_MODES, sample_batch
from gradleak.defenses.base import build_defenses
from gradleak.defenses.pipeline import check_composition, client_seed, defend, defense_metrics
from gradleak.errors import ConfigError
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.metrics import evaluate
from gradleak.models.state import parse_model_state, prepare_model
from gradleak.registry import ATTACKS
from gradleak.runfolder import check_out_dir, image_grid, prepare_out_dir, save_tensors, write_json
from gradleak.types import LocalTraining

PROTOCOLS = ("fedsgd", "fedavg")


@dataclass(frozen=True)
class Scenario:
    """Everything needed to repeat one run (written to ``config.json``).

    Args:
        attack, dataset, model: registry names.
        batch_size: client batch size.
        label_mode: ``random`` (duplicates allowed), ``distinct`` or ``same``.
        protocol: ``fedsgd`` (one gradient) or ``fedavg`` (weight delta after local SGD).
        local_lr, local_epochs, local_batch_size, local_steps: FedAvg's local training.
        labels: ``known`` (labels leak to the server), ``restore`` or a label-method name.
        mode: ``train`` or ``eval`` for BatchNorm/dropout during the client's pass.
        seed: every random choice (data, model init, noise, attack starts) flows from it.
        defenses: ``NAME:key=value`` specs applied in order to the update.
        attack_options, model_options, dataset_options: extra keyword arguments.
        model_state: ``untrained`` or ``trained:EPOCHS`` (trained on the training split, cached;
            the attacked batch then comes from the held-out split).
        checkpoint: a ``.safetensors`` / ``torch.save`` state dict to attack (weights only).
        share_buffers: the client also sends its BatchNorm running statistics.
        adaptive: the attacker copies the defenses' deterministic part onto its trial gradients.
    """

    attack: str = "ig"
    dataset: str = "mnist"
    model: str = "convnet"
    batch_size: int = 1
    label_mode: str = "random"
    protocol: str = "fedsgd"
    local_lr: float = 0.1
    local_epochs: int = 1
    local_batch_size: int | None = None
    local_steps: int | None = None
    labels: str = "known"
    mode: str = "eval"
    seed: int = 0
    defenses: tuple[str, ...] = ()
    attack_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_state: str = "untrained"
    checkpoint: str | None = None
    share_buffers: bool = False
    adaptive: bool = False

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid setting (names are checked by the registries)."""
        problems = []
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.label_mode not in LABEL_MODES:
            problems.append(f"label mode must be one of {', '.join(LABEL_MODES)}, got {self.label_mode!r}")
        if self.mode not in ("train", "eval"):
            problems.append(f"mode must be 'train' or 'eval', got {self.mode!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch size must be an integer >= 1, got {self.batch_size!r}")
        try:
            if parse_model_state(self.model_state) and self.checkpoint:
                problems.append("choose either model_state trained:EPOCHS or a checkpoint, not both")
        except ConfigError as err:
            problems.append(str(err))
        try:  # defense settings fail fast, before any data is loaded
            check_composition(build_defenses(list(self.defenses), seed=self.seed))
        except ConfigError as err:
            problems.append(str(err))
        if self.adaptive and "transform" not in inspect.signature(ATTACKS.get(self.attack)).parameters:
            adaptive = [n for n in ATTACKS.names()
                        if "transform" in inspect.signature(ATTACKS.get(n)).parameters]
            problems.append(f"attack {self.attack!r} has no adaptive mode (a 'transform' option); "
                            f"use one of {', '.join(adaptive)} or drop --adaptive")
        if problems:
            raise ConfigError("; ".join(problems))
        ATTACKS.get(self.attack)

    def local_training(self) -> LocalTraining:
        """The FedAvg local-training settings."""
        return LocalTraining(self.local_lr, self.local_epochs, self.local_batch_size, self.local_steps)


def build_attack(scenario: Scenario, **extra: Any) -> Any:
    """The attack with the scenario's seed and label setting filled in where it takes them
    (``extra``: options computed at run time, e.g. the adaptive attacker's ``transform``)."""
    factory = ATTACKS.get(scenario.attack)
    options = {**scenario.attack_options, **extra}
    accepted = inspect.signature(factory).parameters
    if "seed" in accepted:
        options.setdefault("seed", scenario.seed)
    if "labels" in accepted:
        options.setdefault("labels", scenario.labels)
    return ATTACKS.create(scenario.attack, **options)


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    save_tensor_file: bool = False,
) -> dict[str, Any]:
    """Run one scenario; write the run folder when ``out_dir`` is given; return the summary."""
    scenario.validate()
    attack = build_attack(scenario)
    if out_dir is not None:
        check_out_dir(out_dir, overwrite=overwrite)
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
    out = prepare_out_dir(out_dir, overwrite=overwrite) if out_dir is not None else None
    metrics = evaluate(rec, truth)
    summary = {
        "attack": scenario.attack, "dataset": scenario.dataset, "model": scenario.model,
        "batch_size": scenario.batch_size, "protocol": scenario.protocol, "seed": scenario.seed,
        "defenses": list(scenario.defenses), "labels": scenario.labels,
        "seconds": rec.seconds,
        "metrics": {k: metrics[k] for k in ("mse", "psnr", "ssim", "lpips", "label_accuracy",
                                            "exact_fraction")},
        "out_dir": str(out) if out is not None else None,
    }
    if model_info is not None:
        summary["model_state"] = model_info
    summary["metrics"].update(defense_metrics(defended, metrics))
    summary["adaptive"] = scenario.adaptive
    if out is not None:
        _write_run(out, scenario, summary, metrics, rec, truth, save_tensor_file)
    return summary


def _write_run(out: Path, scenario: Scenario, summary: dict[str, Any], metrics: dict[str, Any],
               rec: Any, truth: Any, save_tensor_file: bool) -> None:
    from gradleak import __version__

    config = {"scenario": asdict(scenario), "versions": {
        "gradleak": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(out / "config.json", config)
    write_json(out / "metrics.json", {**summary, "per_image": metrics["per_image"],
                                      "matching": metrics["matching"], "info": rec.info,
                                      "loss_history": rec.loss_history})
    order = metrics["matching"]
    image_grid([truth.inputs, rec.inputs[order]]).save(out / "reconstruction.png")
    if save_tensor_file:
        tensors = {"truth_inputs": truth.inputs, "truth_labels": truth.labels,
                   "reconstruction": rec.inputs[order]}
        if rec.labels is not None:
            tensors["reconstructed_labels"] = rec.labels
        save_tensors(out / "tensors.safetensors", tensors)


def scenario_from_dict(data: dict[str, Any]) -> Scenario:
    """A :class:`Scenario` from a plain dict (e.g. ``config.json``'s ``scenario``); unknown keys listed."""
    known = set(Scenario.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown scenario option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    values = dict(data)
    if "defenses" in values:
        values["defenses"] = tuple(values["defenses"])
    return Scenario(**values)


def attack_update_file(scenario: Scenario, path: str | Path, out_dir: str | Path, *,
                       kind: str | None = None, num_examples: int | None = None,
                       overwrite: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Attack a saved update (no ground truth): the model comes from the scenario, the shape
    and classes from its dataset; writes ``config.json``, ``reconstruction.png`` and tensors."""
    from gradleak.update_io import load_update

    scenario.validate()
    attack = build_attack(scenario)
    check_out_dir(out_dir, overwrite=overwrite)
    local = scenario.local_training() if (kind or "") == "weight_delta" else None
    update = load_update(path, kind=kind, num_examples=num_examples, local_training=local)
    model, dataset, _ = prepare_model(scenario.model, scenario.model_options, scenario.dataset,
                                      scenario.dataset_options, seed=scenario.seed,
                                      model_state=scenario.model_state, checkpoint=scenario.checkpoint)
    model.train(scenario.mode == "train")
    rec = attack.run(model, update, shape=dataset.shape, progress=progress)
    out = prepare_out_dir(out_dir, overwrite=overwrite)
    summary = {"attack": scenario.attack, "update": str(path), "model": scenario.model,
               "num_examples": update.num_examples, "seconds": rec.seconds, "out_dir": str(out),
               "labels": None if rec.labels is None else rec.labels.tolist()}
    write_json(out / "config.json", {"scenario": asdict(scenario), "update": str(path)})
    write_json(out / "metrics.json", {**summary, "info": rec.info, "loss_history": rec.loss_history})
    image_grid([rec.inputs]).save(out / "reconstruction.png")
    save_tensors(out / "tensors.safetensors", {"reconstruction": rec.inputs})
    return summary
