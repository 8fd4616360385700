"""The model's training stage: untrained, trained for some epochs (cached), or the user's checkpoint.

How much an update leaks depends on where the model is in training, so a scenario says which
weights the server sends:

* ``untrained`` — the seeded initialisation (the default; nothing else happens).
* ``trained:EPOCHS`` — Adam (lr 1e-3, batch 64, seeded shuffling) on the dataset's *training*
  split for ``EPOCHS`` epochs, BatchNorm in train mode; the weights (and BN statistics) are
  cached in ``$GRADLEAK_CACHE/models`` under a hash of everything that determines them (model,
  options, seed, dataset, options, a fingerprint of the training data, epochs, optimiser,
  torch version), so a second run reuses them. Its accuracy (``test_accuracy``) is measured
  on the ``validation`` split.
* a checkpoint file — safetensors, or ``torch.load(weights_only=True)``, which refuses any
  pickle that asks for code; never an arbitrary pickle. A checkpoint that does not fit the
  model is refused with the first differing keys and shapes.

Whatever the model state, the attacked batch comes from the dataset's ``attack`` split, which
shares no image with ``train`` (what models and priors learn from) or ``validation``.

Example:
    >>> from gradleak.experiment.model_state import prepare_model
    >>> model, pool, info = prepare_model("mlp", {}, "digits", {}, seed=0, model_state="trained:1")
    >>> info["test_accuracy"] > 0.5, pool.split, len(pool)
    (True, 'attack', 181)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gradleak.core.errors import ConfigError, DataError
from gradleak.core.jsonable import to_jsonable
from gradleak.core.limits import MAX_EPOCHS
from gradleak.core.paths import cache_dir
from gradleak.core.torchfile import check_file, first_line, load_weights_only
from gradleak.core.types import Progress
from gradleak.data import Dataset
from gradleak.data.splits import load_splits
from gradleak.experiment.outputs import write_file
from gradleak.experiment.user_model import build_named_model, is_user_model, source_digest

log = logging.getLogger(__name__)

FORMAT = 2  # 2: test accuracy measured on the validation split
OPTIMISER = {"name": "adam", "lr": 1e-3, "batch_size": 64}


def parse_model_state(text: str) -> int:
    """``"untrained"`` → 0, ``"trained:EPOCHS"`` → EPOCHS (≥ 1); anything else raises ConfigError."""
    if text == "untrained":
        return 0
    head, _, tail = str(text).partition(":")
    if head == "trained" and tail.isascii() and tail.isdigit() and 1 <= int(tail) <= MAX_EPOCHS:
        return int(tail)
    raise ConfigError(f"model state must be 'untrained' or 'trained:EPOCHS' with EPOCHS between 1 and "
                      f"{MAX_EPOCHS}, got {text!r}")


def train_model(model: nn.Module, data: Dataset, *, epochs: int, seed: int, lr: float = 1e-3,
                batch_size: int = 64, progress: Progress | None = None) -> list[float]:
    """Train ``model`` in place with Adam and seeded shuffling; returns the mean loss per epoch.

    ``progress(batch, total_batches, loss)`` is called after every mini-batch.
    """
    gen = torch.Generator().manual_seed(seed + 104729)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    n = len(data)
    per_epoch, done = -(-n // batch_size), 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2 and n > 1:
                done += 1
                continue  # BatchNorm cannot train on a batch of one
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(data.inputs[idx]), data.labels[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            done += 1
            if progress is not None:
                progress(done, epochs * per_epoch, float(loss.detach()))
        losses.append(total / n)
        log.info("training epoch %d/%d: loss %.4f", epoch + 1, epochs, losses[-1])
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset, *, limit: int | None = None, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on the first ``limit`` examples of ``data``."""
    was_training = model.training
    model.eval()
    n = len(data) if limit is None else min(limit, len(data))
    correct = 0
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        correct += int((model(data.inputs[start:stop]).argmax(1) == data.labels[start:stop]).sum())
    model.train(was_training)
    return correct / max(n, 1)


def fingerprint(data: Dataset) -> str:
    """A short hash of a dataset's pixels and labels."""
    h = hashlib.blake2b(digest_size=16)
    h.update(data.inputs.contiguous().numpy().tobytes())
    h.update(data.labels.contiguous().numpy().tobytes())
    return h.hexdigest()


def trained_state(model: nn.Module, train: Dataset, test: Dataset, *, epochs: int, seed: int,
                  identity: Mapping[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """Load the cached trained weights into ``model``, or train and cache them; returns the info dict."""
    key_src = json.dumps(to_jsonable({**identity, "format": FORMAT, "epochs": epochs, "seed": seed,
                                    "optimiser": OPTIMISER, "train_data": fingerprint(train),
                                    "torch": torch.__version__}), sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    folder = cache_dir() / "models"
    weights, meta = folder / f"{key}.safetensors", folder / f"{key}.json"
    if weights.exists() and meta.exists():
        from safetensors.torch import load_file

        try:
            model.load_state_dict(load_file(weights))
            info = json.loads(meta.read_text())
            log.info("reusing cached trained model %s", weights)
            model.eval()
            return {**info, "cached": True, "cache_file": str(weights)}
        except (OSError, RuntimeError, ValueError) as err:
            log.warning("cached model %s is unreadable (%s); training again", weights, err)
    start = time.perf_counter()
    losses = train_model(model, train, epochs=epochs, seed=seed, lr=OPTIMISER["lr"],
                         batch_size=OPTIMISER["batch_size"], progress=progress)
    info = {"state": f"trained:{epochs}", "epochs": epochs, "train_size": len(train),
            "test_size": len(test), "train_loss": losses, "test_accuracy": accuracy(model, test),
            "accuracy_split": "validation",
            "chance": 1.0 / train.num_classes, "train_seconds": time.perf_counter() - start,
            "cache_key": key}
    try:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_suffix(f".{os.getpid()}.tmp")
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
        os.replace(tmp, weights)
        write_file(meta, json.dumps(info, indent=1))
    except OSError as err:
        log.warning("could not cache the trained model in %s (%s); set GRADLEAK_CACHE", folder, err)
    return {**info, "cached": False, "cache_file": str(weights)}


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``torch.save`` file read with ``weights_only=True``.

    Raises:
        DataError: the file is missing, unreadable, not a state dict, or a pickle that asks for
            anything but tensors (such a pickle is refused before any of it runs).
    """
    p = check_file(path, "checkpoint", ".safetensors or .pt")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(p))
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise DataError(f"checkpoint {p} is not a readable safetensors file ({first_line(err)})") from None
    else:
        obj = load_weights_only(p, "checkpoint")
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise DataError(f"checkpoint {p} holds {type(obj).__name__}, expected a state dict "
                        "(parameter name → tensor); save model.state_dict()")
    state = dict(obj)
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise DataError(f"checkpoint {p} holds NaN or inf in {', '.join(broken[:3])}"
                        f"{' ...' if len(broken) > 3 else ''}: the weights are corrupt or come from a diverged "
                        "training; load a checkpoint saved before the divergence")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint into ``model``; refuse one that does not fit, listing the first differences."""
    state = read_checkpoint(path)
    expected = model.state_dict()
    diffs = [f"missing {k} {tuple(v.shape)}" for k, v in expected.items()
             if k not in state and not k.endswith("num_batches_tracked")]
    diffs += [f"unexpected {k} {tuple(v.shape)}" for k, v in state.items() if k not in expected]
    diffs += [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if diffs:
        raise DataError(f"checkpoint {path} does not fit the model ({len(diffs)} difference(s); first: "
                        + "; ".join(diffs[:5]) + "); check --model, its options, --norm and the dataset's "
                        "shape and classes")
    merged = {k: state.get(k, v).to(v.dtype) for k, v in expected.items()}
    model.load_state_dict(merged)
    model.eval()
    return {"state": "checkpoint", "checkpoint": str(path), "tensors": len(state)}


def prepare_model(model_name: str, model_options: Mapping[str, Any], dataset_name: str,
                  dataset_options: Mapping[str, Any], *, seed: int, model_state: str = "untrained",
                  checkpoint: str | Path | None = None,
                  split: str = "attack",
                  progress: Progress | None = None) -> tuple[nn.Module, Dataset, dict[str, Any] | None]:
    """The model with the requested weights, the data the attacked batch is drawn from, and info.

    The batch always comes from the dataset's ``attack`` split (``split="validation"`` only
    when choosing hyper-parameters), untrained models included: never from data that trained
    the model or a prior (:mod:`gradleak.data.splits`). Untrained without a checkpoint: info is
    ``None``. Otherwise the model is trained on ``train`` (cached) or loaded, and info holds its
    accuracy on ``validation``. ``model_name`` may be a registered model or ``FILE.py:FACTORY``
    (:mod:`~gradleak.experiment.user_model`); ``progress`` follows the training's mini-batches
    when the model is trained here.
    """
    if split not in ("attack", "validation"):
        raise ConfigError(f"a scored batch comes from the attack split (or validation, to choose "
                          f"hyper-parameters), got split {split!r}")
    epochs = parse_model_state(model_state)
    if epochs and checkpoint:
        raise ConfigError("choose either --model-state trained:EPOCHS or --checkpoint FILE, not both")
    splits = load_splits(dataset_name, dataset_options)
    train, held = splits.train, splits.validation
    pool = getattr(splits, split)
    model = build_named_model(model_name, shape=pool.shape, num_classes=pool.num_classes, seed=seed,
                              options=model_options)
    if not epochs and not checkpoint:
        return model, pool, None
    if checkpoint:
        info = load_checkpoint(model, checkpoint)
        info.update(test_accuracy=accuracy(model, held, limit=2000), test_size=min(2000, len(held)),
                    chance=1.0 / held.num_classes, accuracy_split="validation")
    else:
        options = {k: (str(Path(v).expanduser().resolve()) if k == "data_dir" and v else v)
                   for k, v in dataset_options.items() if k != "split"}
        identity = {"model": model_name, "model_options": dict(model_options), "dataset": dataset_name,
                    **({"model_source": source_digest(model_name)} if is_user_model(model_name) else {}),
                    "dataset_options": options, "shape": list(held.shape), "classes": held.num_classes}
        info = trained_state(model, train, held, epochs=epochs, seed=seed, identity=identity, progress=progress)
    log.info("model %s (%s): validation accuracy %.3f (chance %.3f)", model_name, info["state"],
             info["test_accuracy"], info["chance"])
    return model, pool, info
