"""What a client tells the audit about itself, inside its own train reply (no shared filesystem).

A ClientApp calls :func:`annotate_reply` on the reply it is about to send. It adds one
``ConfigRecord`` named ``"gradleak"`` that Flower's strategies ignore (they aggregate the
ArrayRecord and the MetricRecord only), holding:

* ``partition-id`` — from the node config, when the SuperNode has one, so the audit's per-client
  report can name clients by partition instead of by 64-bit node id;
* ``truth`` and ``truth-sha256`` — the batch the client trained on (safetensors bytes) and its
  hash, **only when the client's owner enabled it**: ``share_truth=True`` in the ClientApp's
  code (simulation, evaluation runs) or ``gradleak-share-truth=true`` in the SuperNode's
  ``--node-config`` (set by whoever runs that SuperNode). The server's run config cannot turn
  it on, and by default nothing but the partition id is added.

On the server, :class:`~gradleak.integrations.flower.AuditStrategy` scores with this truth only
when it was built with ``collect_truth=True``; a reply that carries truth anyway is logged as a
warning (a real deployment should never send it).

Example:
    >>> import torch
    >>> blob = pack_truth(torch.zeros(2, 1, 2, 2), torch.tensor([3, 4]))
    >>> truth = unpack_truth({"truth": blob[0], "truth-sha256": blob[1]})
    >>> truth.labels.tolist()
    [3, 4]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

from gradleak.core.types import GroundTruth

RECORD = "gradleak"
"""The name of the ConfigRecord a client adds to its train reply."""

SHARE_KEY = "gradleak-share-truth"
"""The node-config key with which a SuperNode's operator lets its client send its training data."""


def truthy(value: Any) -> bool:
    """A node-config value read as a switch (``true``, ``1``, ``yes``, ``on``)."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")


def share_allowed(node_config: Mapping[str, Any], share_truth: bool | None = None) -> bool:
    """Whether the client may send its data: ``share_truth`` when given, else the node config."""
    return bool(share_truth) if share_truth is not None else truthy(node_config.get(SHARE_KEY, False))


def pack_truth(inputs: torch.Tensor, labels: torch.Tensor) -> tuple[bytes, str]:
    """The batch as safetensors bytes, and their SHA-256."""
    from safetensors.torch import save

    blob = save({"inputs": inputs.detach().cpu().contiguous(), "labels": labels.detach().cpu().contiguous()})
    return blob, hashlib.sha256(blob).hexdigest()


def unpack_truth(record: Mapping[str, Any]) -> GroundTruth | None:
    """The truth a client sent (``None`` if it sent none); a wrong hash raises ValueError."""
    blob = record.get("truth")
    if not blob:
        return None
    if hashlib.sha256(blob).hexdigest() != record.get("truth-sha256"):
        raise ValueError("the client's truth does not match its SHA-256 (corrupted in transit?)")
    from safetensors.torch import load

    data = load(bytes(blob))
    return GroundTruth(data["inputs"], data["labels"])


def annotate_reply(content: Any, context: Any, *, inputs: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None, share_truth: bool | None = None) -> Any:
    """Add the ``"gradleak"`` ConfigRecord to a train reply's ``RecordDict`` and return it.

    Args:
        content: the reply's RecordDict (changed in place).
        context: the ClientApp's Context (its ``node_config``).
        inputs, labels: the batch the client trained on (sent only if sharing is allowed).
        share_truth: the ClientApp's own decision; ``None`` leaves it to the node config's
            ``gradleak-share-truth``.
    """
    from flwr.app import ConfigRecord

    node_config = dict(getattr(context, "node_config", {}) or {})
    record: dict[str, Any] = {}
    if "partition-id" in node_config:
        record["partition-id"] = int(node_config["partition-id"])
    if inputs is not None and labels is not None and share_allowed(node_config, share_truth):
        record["truth"], record["truth-sha256"] = pack_truth(inputs, labels)
    content[RECORD] = ConfigRecord(record)
    return content


def client_info(reply: Any) -> dict[str, Any]:
    """What a reply says about its client: ``{"partition-id": ..., "truth": ..., "sha256": ...}`` (subset)."""
    if reply.has_error() or not reply.has_content() or RECORD not in reply.content.config_records:
        return {}
    record = reply.content.config_records[RECORD]
    info: dict[str, Any] = {}
    if "partition-id" in record:
        info["partition-id"] = int(record["partition-id"])
    if record.get("truth"):
        info["truth"] = record
    return info
