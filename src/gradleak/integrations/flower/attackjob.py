"""One audit job — an attack on one client update — as a picklable payload and a module-level function.

The executor's process pool sends an :class:`AttackJob` to a spawned worker and calls
:func:`run_attack` there; the thread pool calls it in a thread. Scoring against the truth
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


def run_attack(job: AttackJob) -> Any:
    """Load the state the client started from into a copy of the model and run the attack."""
    model = copy.deepcopy(job.model)
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.to(dtypes[k]) for k, v in job.state.items()})
    model.train(job.train_mode)
    return job.attack.run(model, job.update, shape=job.shape)
