"""Attack an update saved to a file (no ground truth): what a server does with a real update.

Example:
    >>> from gradleak.experiment.update_file import attack_update_file
    >>> attack_update_file.__name__
    'attack_update_file'
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from gradleak.core.device import resolve_device
from gradleak.core.results import RunResult
from gradleak.core.types import Progress
from gradleak.experiment.fit import fit_report, fit_warning
from gradleak.experiment.model_state import prepare_model
from gradleak.experiment.outputs import RunFolder
from gradleak.experiment.run import figure_png
from gradleak.experiment.runfolder import json_text, tensor_bytes
from gradleak.experiment.scenario import Scenario, build_attack
from gradleak.experiment.update_io import load_update


def attack_update_file(scenario: Scenario, path: str | Path, out_dir: str | Path, *,
                       kind: str | None = None, num_examples: int | None = None,
                       overwrite: bool = False, progress: Progress | None = None, device: Any = None) -> RunResult:
    """Attack a saved update: the model comes from the scenario, the shape and classes from its
    dataset; writes ``config.json``, ``metrics.json``, ``reconstruction.png`` and tensors.

    The result has no truth and no scores, only the fit (how well the reconstruction explains
    the update: a poor fit usually means the weights are not the client's — pass
    ``scenario.checkpoint``); ``result.extra`` holds the update's path, its number of examples
    and the recovered labels. ``device``: where the attack runs (default the CPU; the fit is
    judged on the CPU).
    """
    scenario.validate()
    dev = resolve_device("cpu" if device is None else device)
    attack = build_attack(scenario)
    with RunFolder(out_dir, overwrite=overwrite) as folder:
        local = scenario.local_training() if (kind or "") == "weight_delta" else None
        update = load_update(path, kind=kind, num_examples=num_examples, local_training=local)
        model, dataset, model_info = prepare_model(scenario.model, scenario.model_options, scenario.dataset,
                                                   scenario.dataset_options, seed=scenario.seed,
                                                   model_state=scenario.model_state,
                                                   checkpoint=scenario.checkpoint)
        model.train(scenario.mode == "train")
        rec = attack.run(model, update, shape=dataset.shape, progress=progress, device=dev)
        fit = fit_report(model, update, rec, exact=attack.exact)
        fit["warning"] = fit_warning(fit, update, model, labels_from=rec.info.get("labels_from"))
        result = RunResult(scenario=asdict(scenario), metrics={}, per_image=[], matching=[], reconstruction=rec,
                           truth=None, seconds=rec.seconds, out_dir=str(folder.path), model_state=model_info,
                           fit=fit, extra={"update": str(path), "num_examples": update.num_examples,
                                           "labels": None if rec.labels is None else rec.labels.tolist(),
                                           "labels_from": rec.info.get("labels_from")})
        summary = saved_update_summary(result)
        folder.write_bytes("config.json", json_text({"scenario": result.scenario, "update": str(path)}).encode())
        folder.write_bytes("metrics.json", json_text({**summary, "info": rec.info,
                                                      "loss_history": rec.loss_history}).encode())
        folder.write_bytes("reconstruction.png", figure_png(result))
        folder.write_bytes("tensors.safetensors", tensor_bytes({"reconstruction": rec.inputs}))
        folder.commit()
    return result


def saved_update_summary(result: RunResult) -> dict[str, Any]:
    """What the CLI prints for an attacked saved update (``fit``: how well it explains the update)."""
    out = {"attack": result.scenario["attack"], "update": result.extra["update"],
           "model": result.scenario["model"], "num_examples": result.extra["num_examples"],
           "seconds": result.seconds, "out_dir": result.out_dir, "labels": result.extra["labels"],
           "labels_from": result.extra.get("labels_from"), "fit": result.fit}
    if result.model_state is not None:
        out["model_state"] = result.model_state
    return out
