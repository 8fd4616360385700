"""Audit jobs — an attack on one client update, or on a whole round — as picklable payloads.

The executor's process pool sends a job to a spawned worker and calls :func:`run_job` there; the
thread pool calls it in a thread. A :class:`RoundJob` holds every update of one round for an
attack that batches clients (``batches_clients``): :func:`run_round` attacks them in one
``run_many`` pass (:func:`~gradleak.attacks.batched.attack_each`) and answers per update. Scoring against the truth
happens back in the server process (the truth never travels to a worker).

Example:
    >>> import torch
    >>> from gradleak.core.types import ClientUpdate
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> update = ClientUpdate.from_gradients({n: torch.ones_like(p) for n, p in model.named_parameters()}, 1)
    >>> class Echo:
    ...     def run(self, model, update, *, shape):
    ...         return torch.zeros(update.num_examples, *shape)
    >>> run_attack(AttackJob(Echo(), model, model.state_dict(), update, (1, 2, 2), False)).shape
    torch.Size([1, 1, 2, 2])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradleak.core.types import ClientUpdate


@dataclass
class AttackJob:
    """What a worker needs: the attack, the architecture, the sent state, the update, the input shape."""

    attack: Any
    model: nn.Module
    state: dict[str, torch.Tensor]
    update: ClientUpdate
    shape: tuple[int, ...]
    train_mode: bool
    device: Any = None


@dataclass
class RoundJob:
    """A round's updates for one batched pass; ``keys[i]`` names ``jobs[i]``."""

    keys: list[Any]
    jobs: list[AttackJob]

    @property
    def budget_units(self) -> int:
        """How many per-attack budgets the whole round gets (one per update)."""
        return len(self.jobs)


def _model(job: AttackJob) -> nn.Module:
    model = copy.deepcopy(job.model)
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.to(dtypes[k]) for k, v in job.state.items()})
    model.train(job.train_mode)
    return model


def run_attack(job: AttackJob) -> Any:
    """Load the state the client started from into a copy of the model and run the attack."""
    extra = {} if job.device is None else {"device": job.device}
    return job.attack.run(_model(job), job.update, shape=job.shape, **extra)


def run_round(job: RoundJob) -> list[tuple[str, Any]]:
    """Attack a round's updates together; per update ``("ok", reconstruction)`` or ``("failed", reason)``."""
    from gradleak.attacks.batched import attack_each

    pairs: list[tuple[Any, Any]] = []
    for one in job.jobs:
        try:
            pairs.append((_model(one), one.update))
        except Exception as err:  # this update's failure alone
            pairs.append((err, one.update))
    first = job.jobs[0]
    out = attack_each(first.attack, pairs, shape=first.shape, device=first.device)
    return [("failed", f"{type(o).__name__}: {o}") if isinstance(o, Exception) else ("ok", o) for o in out]


def split_outcome(job: Any, outcome: Any) -> list[tuple[Any, Any]]:
    """``(key, outcome)`` per update: a batched round's answers, or the whole job's fate for each."""
    from gradleak.integrations.flower.executor import Outcome

    if not isinstance(job.payload, RoundJob):
        return [(job.key, outcome)]
    keys = job.payload.keys
    answers = outcome.result if outcome.status == "ok" else [(outcome.status, outcome.reason)] * len(keys)
    return [(key, Outcome(status, value if status == "ok" else None, "" if status == "ok" else value,
                          outcome.seconds)) for key, (status, value) in zip(keys, answers, strict=True)]


def run_job(payload: AttackJob | RoundJob) -> Any:
    """The executor's job function: one update or a whole round."""
    return run_round(payload) if isinstance(payload, RoundJob) else run_attack(payload)
