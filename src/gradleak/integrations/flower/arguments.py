"""The arguments of :class:`~gradleak.integrations.flower.strategy.AuditStrategy`, checked at once.

Every unusable argument is named in one :class:`~gradleak.core.errors.ConfigError` before the
federation starts (a Flower run that fails on its first reply wastes a round of every client).

Example:
    >>> import torch
    >>> try:
    ...     check_arguments(model="net", shape=(1, 8, 8), mode="train", local_training=None, seed=0,
    ...                     rounds=None, clients=None, inner=object(), workers=0)
    ... except ConfigError as err:
    ...     print(str(err)[:74])
    AuditStrategy: workers must be an integer between 1 and 1024, got 0; model
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.core.limits import MAX_SEED
from gradleak.core.types import LocalTraining
from gradleak.core.validate import int_problem, real_problem


def check_arguments(*, model: Any, shape: Any, mode: Any, local_training: Any, seed: Any, rounds: Any,
                     clients: Any, inner: Any, pool: Any = "thread", workers: Any = 1,
                     attack_seconds: Any = None, round_seconds: Any = None) -> None:
    """Refuse every unusable AuditStrategy argument at once, before the federation starts."""
    problems = []
    if pool not in ("thread", "process"):
        problems.append(f"pool must be 'thread' or 'process', got {pool!r}")
    if problem := int_problem("workers", workers, low=1, high=1024):
        problems.append(problem)
    for name, value in (("attack_seconds", attack_seconds), ("round_seconds", round_seconds)):
        if value is not None and (problem := real_problem(name, value, low=0)):
            problems.append(problem + " (None: no budget)")
    if not isinstance(model, nn.Module):
        problems.append(f"model must be the torch.nn.Module the clients train, got {type(model).__name__}")
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        problems.append(f"shape must be one input's (C, H, W) with positive integers, got {shape!r}")
    if mode not in ("train", "eval"):
        problems.append(f"mode must be 'train' or 'eval', got {mode!r}")
    if local_training is not None and not isinstance(local_training, LocalTraining):
        problems.append(f"local_training must be a LocalTraining(...) or None, got {type(local_training).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        problems.append(f"seed must be an integer between 0 and 2**62, got {seed!r}")
    if rounds is not None and not (isinstance(rounds, Collection) and all(isinstance(r, int) for r in rounds)):
        problems.append(f"rounds must be a collection of round numbers or None, got {rounds!r}")
    if clients is not None and not (isinstance(clients, int) and not isinstance(clients, bool) and clients >= 1
                                    or isinstance(clients, Collection) and not isinstance(clients, str)):
        problems.append(f"clients must be a count >= 1, a collection of node ids or None, got {clients!r}")
    if not all(hasattr(inner, m) for m in ("configure_train", "aggregate_train")):
        problems.append(f"inner must be a Flower strategy (e.g. FedAvg()), got {type(inner).__name__}")
    if problems:
        raise ConfigError("AuditStrategy: " + "; ".join(problems))
