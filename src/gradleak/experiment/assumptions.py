"""What a run assumed about the server's knowledge, recorded with every result.

A reconstruction is only as realistic as what the attacker was given. Each run lists the
assumptions it relied on (``config.json``, ``--json``, the sweep store, the report):

========================  ===========  =======================================================
assumption                upper bound  holds when
========================  ===========  =======================================================
``known_labels``          yes          the labels leaked (``labels="known"``) and the attack used them
``shared_bn_statistics``  yes          the client also sent its BatchNorm statistics
``eval_mode_bn``          yes          the model has BatchNorm and the client's pass ran in eval mode
``untrained_model``       yes          the model is at its random initialisation
``known_batch_size``      no           the attack sized its dummy batch from ``num_examples``
``known_local_training``  no           a FedAvg delta was read with the local lr/steps the server set
``known_defense``         no           the attacker copied the defense onto its trial gradients
========================  ===========  =======================================================

*Upper-bound* assumptions make a result a best case for the attacker: real clients keep their
labels, train in train mode, rarely share BN statistics, and leak least once the model has
learnt. The others are what an FL server ordinarily knows (the example count FedAvg weights by,
the local training it prescribes) or what Kerckhoffs's principle grants (the defense in use).

Example:
    >>> mark_assumptions(["untrained_model", "known_batch_size"])
    'untrained model*, known batch size'
    >>> upper_bound(["known_batch_size"]), upper_bound(["known_labels"])
    (False, True)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gradleak.core.types import ClientUpdate, Reconstruction

ASSUMPTIONS: dict[str, tuple[str, bool]] = {
    "known_labels": ("the client's labels leaked to the server and the attack used them", True),
    "shared_bn_statistics": ("the client also sent its BatchNorm statistics", True),
    "eval_mode_bn": ("the client's pass ran BatchNorm in eval mode (no batch statistics)", True),
    "untrained_model": ("the model is at its random initialisation", True),
    "known_batch_size": ("the attack sized its batch from the update's num_examples", False),
    "known_local_training": ("the FedAvg delta was read with the local training the server set", False),
    "known_defense": ("the attacker copied the client's defense onto its trial gradients", False),
}
"""Name → (what it means, whether it is an upper-bound assumption)."""


def run_assumptions(scenario: Any, model: nn.Module, update: ClientUpdate, rec: Reconstruction) -> list[str]:
    """The assumptions one run relied on, in :data:`ASSUMPTIONS` order.

    Args:
        scenario: the :class:`~gradleak.experiment.Scenario` that ran.
        model: the attacked model; update: what the server received; rec: the attack's output.
    """
    found = set()
    if update.labels is not None and rec.info.get("labels_from", "known") == "known":
        found.add("known_labels")
    if update.buffers:
        found.add("shared_bn_statistics")
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and scenario.mode == "eval":
        found.add("eval_mode_bn")
    if scenario.model_state == "untrained" and not scenario.checkpoint:
        found.add("untrained_model")
    found.add("known_batch_size")  # every attack sizes its dummy batch from num_examples
    if update.kind == "weight_delta":
        found.add("known_local_training")
    if scenario.adaptive and update.defenses:
        found.add("known_defense")
    return [name for name in ASSUMPTIONS if name in found]


def upper_bound(assumptions: list[str]) -> bool:
    """Whether any of ``assumptions`` makes the result an attacker's best case."""
    return any(ASSUMPTIONS.get(a, ("", False))[1] for a in assumptions)


def mark_assumptions(assumptions: list[str]) -> str:
    """The list for a table cell: upper-bound assumptions marked ``*``."""
    return ", ".join(a.replace("_", " ") + ("*" if ASSUMPTIONS.get(a, ("", False))[1] else "")
                     for a in assumptions) or "none"
