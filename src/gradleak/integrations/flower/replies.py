"""Reading a Flower train reply as a client update: arrays, ``num-examples``, the local training.

The server sent the global arrays and a train config; the reply carries the client's arrays
and metrics. :func:`read_update` turns the pair into a
:class:`~gradleak.core.types.ClientUpdate` (weight delta = reply − sent) or raises :class:`Skip`
with the reason it cannot. :func:`local_training_from_config` reads what the clients run from
the train config the server itself sent.

Example:
    >>> local = local_training_from_config({"lr": 0.1, "momentum": 0.9, "weight-decay": 5e-4, "local-epochs": 2})
    >>> local.optimizer, local.momentum, local.weight_decay, local.epochs, local.batch_size
    ('sgd', 0.9, 0.0005, 2, None)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gradleak.core.errors import ConfigError, MissingDependencyError
from gradleak.core.types import ClientUpdate, LocalTraining

CONFIG_KEYS = {"lr": "lr", "epochs": "local-epochs", "steps": "local-steps", "batch_size": "batch-size",
               "optimizer": "optimizer", "momentum": "momentum", "nesterov": "nesterov",
               "weight_decay": "weight-decay", "prox_mu": "proximal-mu", "beta1": "beta1", "beta2": "beta2",
               "eps": "eps"}
"""Train-config keys the local-training settings are read from (override with ``config_keys``).
``proximal-mu`` is the key Flower's own ``FedProx`` strategy sends."""


def require_flwr() -> Any:
    """Import and return ``flwr``, or raise :class:`MissingDependencyError` naming the extra.

    Flower's anonymous telemetry is switched off (``FLWR_TELEMETRY_ENABLED=0``) unless the user
    set that variable: gradleak never talks to the network.
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    try:
        import flwr
        import flwr.serverapp.strategy  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError("flwr", "flower") from err
    return flwr


class Skip(Exception):
    """A reply that cannot be read as a client update (the message says why)."""


def to_tensors(record: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """An ArrayRecord (or any mapping of Flower ``Array``) as CPU tensors (copies)."""
    return {k: torch.from_numpy(v.numpy().copy()) for k, v in record.items()}


def local_training_from_config(config: Mapping[str, Any], keys: Mapping[str, str] = CONFIG_KEYS,
                               fallback: LocalTraining | None = None) -> LocalTraining:
    """The clients' local training from the train config the server sent.

    Reads the learning rate, epochs or steps, batch size (0 or less: the whole local data set),
    the optimiser (``sgd``/``adam``/``adamw``), momentum, Nesterov, weight decay, FedProx's
    ``proximal-mu`` and Adam's ``beta1``/``beta2``/``eps``. Settings missing from the config are
    taken from ``fallback`` (or the defaults: plain SGD); a missing learning rate without a
    fallback raises ConfigError, and so does any invalid setting.
    """
    keys = {**CONFIG_KEYS, **keys}
    base = fallback or LocalTraining()
    if keys["lr"] not in config and fallback is None:
        raise ConfigError(f"the train config has no {keys['lr']!r} (the clients' learning rate); send it "
                          "in train_config, or pass local_training=LocalTraining(...) to AuditStrategy")

    def get(field: str, default: Any) -> Any:
        return config.get(keys[field], default)

    batch, steps = get("batch_size", base.batch_size), get("steps", base.steps)
    try:
        return dataclasses.replace(
            base, lr=float(get("lr", base.lr)), epochs=int(get("epochs", base.epochs)),
            batch_size=int(batch) if batch and int(batch) > 0 else None,
            steps=int(steps) if steps and int(steps) > 0 else None,
            optimizer=str(get("optimizer", base.optimizer)).lower(), momentum=float(get("momentum", base.momentum)),
            nesterov=bool(get("nesterov", base.nesterov)),
            weight_decay=float(get("weight_decay", base.weight_decay)),
            prox_mu=float(get("prox_mu", base.prox_mu)),
            betas=(float(get("beta1", base.betas[0])), float(get("beta2", base.betas[1]))),
            eps=float(get("eps", base.eps)))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"the train config's local-training settings cannot be read: {err}") from err


def align(arrays: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Arrays keyed and shaped like ``model.state_dict()`` (by name, else by position), or :class:`Skip`."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if set(arrays) != set(expected):
        if len(arrays) != len(expected):
            missing, extra = sorted(set(expected) - set(arrays))[:3], sorted(set(arrays) - set(expected))[:3]
            raise Skip(f"{len(arrays)} arrays for a model with {len(expected)} state_dict entries "
                       f"(missing {missing}, unexpected {extra}); is `model` the architecture the "
                       "clients train?")
        arrays = dict(zip(expected, arrays.values(), strict=True))
    wrong = [f"{k}: {tuple(v.shape)} != {expected[k]}" for k, v in arrays.items() if tuple(v.shape) != expected[k]]
    if wrong:
        raise Skip("array shapes do not fit the model: " + "; ".join(wrong[:4]))
    return arrays


def num_examples(reply: Any, key: str) -> int:
    """The reply's ``key`` metric (the examples it trained on), or :class:`Skip`."""
    for record in reply.content.metric_records.values():
        if key in record:
            value = record[key]
            if not isinstance(value, (int, float)) or value < 1:
                raise Skip(f"{key!r} must be a positive number, got {value!r}")
            return int(value)
    raise Skip(f"the reply has no {key!r} metric (the number of examples the client trained on)")


def read_update(reply: Any, sent: dict[str, torch.Tensor], config: Mapping[str, Any], model: nn.Module, *,
                weight_key: str, keys: Mapping[str, str], fallback: LocalTraining | None,
                meta: Mapping[str, Any]) -> tuple[ClientUpdate, dict[str, torch.Tensor]]:
    """The update of one reply and the (aligned) state the client started from, or :class:`Skip`."""
    if reply.has_error():
        raise Skip(f"the client replied with an error (code {reply.error.code}): {reply.error.reason}")
    if not reply.has_content():
        raise Skip("the reply has no content")
    arrays = list(reply.content.array_records.values())
    if len(arrays) != 1:
        raise Skip(f"the reply carries {len(arrays)} ArrayRecords; expected exactly one")
    try:
        returned = to_tensors(arrays[0])
    except Exception as err:
        raise Skip(f"the reply's arrays cannot be read as numpy arrays: {err}") from err
    before, after = align(sent, model), align(returned, model)
    n = num_examples(reply, weight_key)
    try:
        local = local_training_from_config(config, keys, fallback)
    except ConfigError as err:
        raise Skip(str(err)) from err
    params = [name for name, _ in model.named_parameters()]
    buffers = {k: v for k, v in after.items() if k not in params}
    update = ClientUpdate.from_weights({k: before[k].float() for k in params}, {k: after[k].float() for k in params},
                                       n, local, buffers=buffers or None, meta=dict(meta))
    return update, before
