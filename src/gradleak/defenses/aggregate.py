"""Secure aggregation: the server sees only the aggregate of ``clients`` clients' updates.

Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning"
(CCS 2017). The server learns the sum of the clients' (masked) updates and, from FedAvg's
weighting, the total number of examples, so what it can attack is the example-weighted
average ``Σ_k n_k·u_k / Σ_k n_k``: the mean gradient of all ``N×b`` examples for FedSGD (exact),
or the FedAvg average of the weight deltas. The attack must then reconstruct ``N×b`` images,
and the ground truth is every client's batch. ``clients=1`` is the plain update.

Example:
    >>> import torch
    >>> from gradleak.core.types import ClientUpdate
    >>> a = ClientUpdate.from_gradients({"w": torch.ones(2)}, num_examples=1)
    >>> b = ClientUpdate.from_gradients({"w": torch.zeros(2)}, num_examples=3)
    >>> both = SecureAggregation(clients=2).combine([a, b])
    >>> both.tensors["w"].tolist(), both.num_examples
    ([0.25, 0.25], 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.types import ClientUpdate
from gradleak.defenses.base import Defense


class SecureAggregation(Defense):
    """Combine ``clients`` updates into the one aggregate the server sees.

    Args:
        clients: number of clients aggregated, ``N >= 1``.

    Raises:
        ConfigError: ``clients`` not a positive integer; at combine time, a different number
            of updates or updates that differ in kind or parameter names.
    """

    name = "aggregate"

    def __init__(self, *, clients: int = 2) -> None:
        if not isinstance(clients, int) or isinstance(clients, bool) or clients < 1:
            raise ConfigError(f"aggregate: clients must be an integer >= 1, got {clients!r}")
        self.clients = clients

    def combine(self, updates: Sequence[ClientUpdate]) -> ClientUpdate:
        """The example-weighted average of ``clients`` updates (what secure aggregation reveals)."""
        if len(updates) != self.clients:
            raise ConfigError(f"aggregate: expected {self.clients} client updates, got {len(updates)}")
        first = updates[0]
        problems = [f"update {i} is {u.kind}, update 0 is {first.kind}"
                    for i, u in enumerate(updates) if u.kind != first.kind]
        problems += [f"update {i} has different parameter names" for i, u in enumerate(updates)
                     if set(u.tensors) != set(first.tensors)]
        if problems:
            raise ConfigError("aggregate: " + "; ".join(problems))
        total = sum(u.num_examples for u in updates)
        tensors = {name: sum(u.tensors[name] * (u.num_examples / total) for u in updates)
                   for name in first.tensors}
        labels = (torch.cat([u.labels for u in updates])  # type: ignore[misc]
                  if all(u.labels is not None for u in updates) else None)
        meta = {**first.meta, "aggregate": {"clients": self.clients, "num_examples": total}}
        combined = replace(first, tensors=tensors, num_examples=total, labels=labels, buffers=None,
                           meta=meta)
        return combined.with_tensors(tensors, defense=self.spec)

    def __call__(self, update: ClientUpdate, *, model: nn.Module | None = None,
                 others: Sequence[ClientUpdate] = ()) -> ClientUpdate:
        """Aggregate ``update`` with the ``others`` (``clients − 1`` more updates)."""
        return self.combine([update, *others])
