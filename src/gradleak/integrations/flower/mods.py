"""gradleak defenses as a Flower client mod: test a defense inside the real protocol.

``defense_mod(["clip:norm=1", "noise:sigma=0.01"])`` returns a Flower ``Mod`` (see
``flwr.clientapp.ClientApp(mods=...)``). On every train message it remembers the arrays the
server sent, lets the ClientApp train, turns the reply into a weight delta
``reply − sent``, applies the defenses in order (the same objects as ``gradleak attack
--defense``: noise, clip, prune, quantize, ...) and sends ``sent + defended delta`` back with
the same keys, order and dtypes. BatchNorm buffers (``running_*``, ``num_batches_tracked``)
and non-float arrays pass unchanged. Other message types pass through untouched.

The mod fails closed: a reply it cannot defend (several ArrayRecords, changed names or shapes)
becomes an error reply instead of an undefended update. Noise is seeded per call from
``seed``, the server round and the node's ``partition-id`` (so a simulation repeats exactly).
Defenses that change how the client trains (DP-SGD, MixUp) belong in the ClientApp's training
loop, not in a mod.

Example:
    >>> from flwr.clientapp import ClientApp                                  # doctest: +SKIP
    >>> app = ClientApp(mods=[defense_mod(["clip:norm=1.0", "noise:sigma=0.01"], seed=0)])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.types import ClientUpdate, LocalTraining
from gradleak.defenses.base import build_defenses
from gradleak.integrations.flower.replies import require_flwr, to_tensors

log = logging.getLogger(__name__)

BUFFER_MARKERS = ("running_mean", "running_var", "num_batches_tracked")


def _is_defended(name: str, value: torch.Tensor, params: set[str] | None) -> bool:
    if params is not None:
        return name in params
    return value.is_floating_point() and not any(m in name for m in BUFFER_MARKERS)


def defense_mod(defenses: Sequence[str | Callable[..., ClientUpdate]], *, seed: int = 0,
                model_fn: Callable[[], nn.Module] | None = None) -> Callable[[Any, Any, Any], Any]:
    """A Flower client mod applying gradleak defenses to the weight delta of every train reply.

    Args:
        defenses: ``NAME:key=value`` specs (built with :func:`~gradleak.defenses.base.build_defenses`)
            or defense objects ``defense(update, *, model=None) -> ClientUpdate``, applied in order.
        seed: base seed of the defenses' randomness.
        model_fn: builds the client's architecture; when given, exactly its parameters are
            defended and the model is passed to the defenses.

    Returns:
        ``mod(message, context, call_next) -> Message``.

    Raises:
        MissingDependencyError: ``flwr`` is not installed.
        UnknownNameError, ConfigError: a spec names no registered defense, has bad options, or
            names a training defense (DP-SGD, MixUp), which belongs in the training loop.
    """
    require_flwr()
    from flwr.app import Array, ArrayRecord, Error, Message
    from flwr.common.constant import ErrorCode

    specs = [d for d in defenses if isinstance(d, str)]
    for built in build_defenses(specs, seed=seed):  # fail now, not inside a client, on a bad spec
        if built.trains:
            raise ConfigError(f"{built.name} changes how the client trains, so it cannot act on the "
                              "reply: run it in the ClientApp's training loop (defense.train(...)), "
                              "as gradleak.integrations.flower.demo does")
    model = model_fn() if model_fn is not None else None
    params = {n for n, _ in model.named_parameters()} if model is not None else None

    def fail(msg: Any, reason: str) -> Any:
        log.error("defense_mod: %s; sending an error reply instead of an undefended update", reason)
        return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=f"defense_mod: {reason}"),
                       reply_to=msg)

    def mod(msg: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        if str(msg.metadata.message_type).split(".")[0] != "train":
            return call_next(msg, context)
        sent_records = list(msg.content.array_records.values())
        if len(sent_records) != 1:
            return fail(msg, f"the train message carries {len(sent_records)} ArrayRecords; expected one")
        before = to_tensors(sent_records[0])
        config: dict[str, Any] = {}
        for record in msg.content.config_records.values():
            config.update(dict(record))
        reply = call_next(msg, context)
        if reply.has_error() or not reply.has_content():
            return reply
        items = list(reply.content.array_records.items())
        if len(items) != 1:
            return fail(msg, f"the reply carries {len(items)} ArrayRecords; expected one")
        key, record = items[0]
        after = to_tensors(record)
        if list(after) != list(before) or any(after[k].shape != before[k].shape for k in after):
            return fail(msg, "the reply's array names or shapes differ from what the server sent")
        chosen = [k for k, v in after.items() if _is_defended(k, v, params)]
        n = 1
        for metrics in reply.content.metric_records.values():
            n = int(metrics.get("num-examples", n))
        lr = float(config.get("lr", 1.0)) if isinstance(config.get("lr", 1.0), (int, float)) else 1.0
        node = int(context.node_config.get("partition-id", context.node_id))
        call_seed = seed + 1_000_003 * int(config.get("server-round", 0)) + 7919 * node
        update = ClientUpdate.from_weights({k: before[k].double() for k in chosen},
                                           {k: after[k].double() for k in chosen}, max(n, 1),
                                           LocalTraining(lr=lr if lr > 0 else 1.0))
        built = iter(build_defenses(specs, seed=call_seed))
        for d in defenses:
            update = (next(built) if isinstance(d, str) else d)(update, model=model)
        arrays = {}
        for k, v in after.items():
            value = (before[k].double() + update.tensors[k].double()).to(v.dtype) if k in chosen else v
            arrays[k] = Array(np.ascontiguousarray(value.numpy()))
        reply.content.array_records[key] = ArrayRecord(arrays)
        log.info("defense_mod: applied %s to %d arrays", list(update.defenses), len(chosen))
        return reply

    return mod
