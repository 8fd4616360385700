"""Attack many (model, update) pairs — a whole FL round — with as few batched passes as possible.

A server audits every client of a round: the clients trained the same global model, so their
updates can share one ``Attack.run_many`` call. :func:`attack_each` groups the pairs by identical
model, runs each group batched, and returns, per pair, the reconstruction or the error that pair
alone raised (one bad update never costs the others their result). The Flower audit and any other
caller that holds several updates use it.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> from gradleak.core.registry import create_attack
    >>> model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> updates = [fedsgd_update(model, torch.rand(1, 1, 8, 8), torch.tensor([c])) for c in (1, 2)]
    >>> out = attack_each(create_attack("ig", steps=3), [(model, u) for u in updates], shape=(1, 8, 8))
    >>> [type(o).__name__ for o in out], out[0].info["batched"]
    (['Reconstruction', 'Reconstruction'], 2)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gradleak.core.types import ClientUpdate, Progress, Reconstruction

log = logging.getLogger(__name__)


def same_model(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models have the same architecture, mode, weights and buffers."""
    if a is b:
        return True
    if type(a) is not type(b) or str(a) != str(b) or a.training != b.training:
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and sa[k].device == sb[k].device and torch.equal(sa[k], sb[k]) for k in sa)


def attack_each(attack: Any, pairs: Sequence[tuple[nn.Module | Exception, ClientUpdate]], *,
                shape: Sequence[int], device: Any = None,
                progress: Progress | None = None) -> list[Reconstruction | Exception]:
    """Run ``attack`` on every ``(model, update)`` pair, batching pairs that share a model.

    Args:
        attack: an :class:`~gradleak.attacks.base.Attack` (anything with ``run``; ``run_many`` is used
            when present).
        pairs: the model each update belongs to (an exception in its place is passed through).
        shape, device, progress: as ``Attack.run``.

    Returns:
        per pair, its :class:`Reconstruction` or the exception its own ``run`` raised.
    """
    out: list[Reconstruction | Exception | None] = [None] * len(pairs)
    groups: list[list[int]] = []
    for i, (model, _) in enumerate(pairs):
        if isinstance(model, Exception):
            out[i] = model
            continue
        for group in groups:
            if same_model(pairs[group[0]][0], model):  # type: ignore[arg-type]
                group.append(i)
                break
        else:
            groups.append([i])
    for group in groups:
        model = pairs[group[0]][0]
        usable = [i for i in group if not attack.check(model, pairs[i][1])] if hasattr(attack, "check") else group
        for i in sorted(set(group) - set(usable)):  # let run raise its own error, with every reason
            out[i] = _run_one(attack, model, pairs[i][1], shape, device, progress)
        if len(usable) > 1 and hasattr(attack, "run_many"):
            try:
                extra = {k: v for k, v in (("progress", progress), ("device", device)) if v is not None}
                recs = attack.run_many(model, [pairs[i][1] for i in usable], shape=shape, **extra)
                for i, rec in zip(usable, recs, strict=True):
                    out[i] = rec
                continue
            except Exception as err:  # find out which update is at fault: one at a time
                log.warning("batched attack of %d updates failed (%s); attacking them one at a time",
                            len(usable), err)
        for i in usable:
            out[i] = _run_one(attack, model, pairs[i][1], shape, device, progress)
    return out  # type: ignore[return-value]


def _run_one(attack: Any, model: Any, update: ClientUpdate, shape: Sequence[int], device: Any,
             progress: Progress | None) -> Reconstruction | Exception:
    extra = {k: v for k, v in (("progress", progress), ("device", device)) if v is not None}
    try:  # only the keywords given: a user's attack object may take just (model, update, shape)
        return attack.run(model, update, shape=shape, **extra)
    except Exception as err:  # the caller records it for this update alone
        return err
