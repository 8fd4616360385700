"""The attack contract every attack keeps.

Example:
    >>> from gradleak.registry import create_attack
    >>> attack = create_attack("idlg", steps=5)
    >>> attack.name
    'idlg'
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import nn

from gradleak.errors import NotApplicableError, UpdateMismatchError
from gradleak.types import ClientUpdate, Reconstruction

Progress = Callable[[int, int, float], None]
"""``progress(step, total, loss)``: called by attacks as they run (for progress bars)."""


class Attack(ABC):
    """Base of all attacks: ``check`` lists every reason it cannot run, ``reconstruct`` runs it.

    Subclasses set ``name``, take their hyper-parameters as keyword-only constructor
    arguments, and implement ``_check`` (extra reasons) and ``reconstruct``.
    """

    name: ClassVar[str] = "attack"

    def check(self, model: nn.Module, update: ClientUpdate) -> list[str]:
        """Every reason this attack cannot run on ``(model, update)``, all at once."""
        reasons: list[str] = []
        try:
            update.validate(model)
        except UpdateMismatchError as err:
            reasons.append(str(err))
        return reasons + self._check(model, update)

    def _check(self, model: nn.Module, update: ClientUpdate) -> list[str]:
        return []

    @abstractmethod
    def reconstruct(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
                    progress: Progress | None = None) -> Reconstruction:
        """Recover the client's inputs (``(num_examples, *shape)`` pixels in [0, 1])."""

    def run(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
            progress: Progress | None = None) -> Reconstruction:
        """``check`` then ``reconstruct``; raises :class:`NotApplicableError` with all reasons."""
        reasons = self.check(model, update)
        if reasons:
            if len(reasons) == 1 and reasons[0].startswith("the update does not fit"):
                raise UpdateMismatchError(reasons[0])
            raise NotApplicableError(f"attack {self.name!r}", reasons)
        start = time.perf_counter()
        rec = self.reconstruct(model, update, shape=shape, progress=progress)
        rec.info.setdefault("attack", self.name)
        return Reconstruction(rec.inputs.detach().clamp(0, 1), rec.labels, rec.loss_history,
                              time.perf_counter() - start, rec.info)


def attack_generator(seed: int) -> torch.Generator:
    """The attack's own seeded random generator (the global RNG is never used)."""
    return torch.Generator().manual_seed(int(seed) + 7919)
