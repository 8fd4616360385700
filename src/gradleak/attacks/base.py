"""The attack contract every attack keeps.

An attack is built from keyword-only hyper-parameters, receives only what the server sees
(the model and a :class:`~gradleak.core.types.ClientUpdate`) and returns a
:class:`~gradleak.core.types.Reconstruction`; it never sees a ``GroundTruth``.

What an attack needs and offers is declared as class attributes, read by the experiment, the
CLI and the contract test (never guessed from signatures):

* ``needs_labels`` — it works with fixed labels, known or restored (``check`` then requires
  labels in the update or a last ``nn.Linear`` layer to restore them from);
* ``takes_labels`` — it has a ``labels=`` option (``known``/``restore``/a label method);
* ``needs_prior`` — it searches a generator prior (``generator=``);
* ``supports_adaptive`` — it takes ``transform=``, the adaptive attacker's copy of the defenses;
* ``takes_seed`` — it takes ``seed=`` (every random choice flows from it);
* ``update_kinds`` — the update kinds it reads (``kind_hint``: what to do about another kind);
* ``unrolls_local_training`` — it simulates the client's optimiser on a weight delta instead of
  reading the delta as an average gradient (which Adam/AdamW deltas cannot be read as);
* ``presets`` — named option sets (plain dicts): ``tiny`` is a seconds-long smoke run (tests,
  run-time estimates); ``paper`` is the paper's setting as far as it is known, and
  ``paper_sources`` says where each of its values comes from (``[PAPER]``, ``[CODE]``, ``[ABS]``)
  or that it is a ``[GUESS]``; the implicit ``default`` preset is the constructor's defaults,
  and ``default_tuned_on`` says on which split (if any) gradleak chose them.

Two more attributes describe the output, for people rather than for the experiment:

* ``exact`` — the attack claims an exact recovery (its fit is judged by a residual too);
* ``progress_unit`` — what its ``progress(step, total, loss)`` calls count, and
  ``progress_total_is_bound`` — ``total`` is a cap the attack may stop well before (no ETA).

Example:
    >>> from gradleak.core.registry import create_attack
    >>> attack = create_attack("idlg", steps=5)
    >>> attack.name, attack.needs_labels
    ('idlg', True)
"""

from __future__ import annotations

import numbers
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from gradleak.core.errors import ConfigError, NotApplicableError, UpdateMismatchError
from gradleak.core.limits import check_pixels
from gradleak.core.results import Problem
from gradleak.core.types import ClientUpdate, Progress, Reconstruction
from gradleak.inversion.gradients import delta_problems
from gradleak.labels.resolve import labels_available


class Attack(ABC):
    """Base of all attacks: ``check`` lists every reason it cannot run, ``reconstruct`` runs it.

    Subclasses set ``name`` and their capability attributes, take their hyper-parameters as
    keyword-only constructor arguments, and implement ``_check`` (extra reasons, as strings)
    and ``reconstruct``.
    """

    name: ClassVar[str] = "attack"
    needs_labels: ClassVar[bool] = False
    takes_labels: ClassVar[bool] = False
    needs_prior: ClassVar[bool] = False
    supports_adaptive: ClassVar[bool] = False
    takes_seed: ClassVar[bool] = True
    update_kinds: ClassVar[tuple[str, ...]] = ("gradients", "weight_delta")
    kind_hint: ClassVar[str] = ""
    unrolls_local_training: ClassVar[bool] = False
    presets: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}}
    paper_sources: ClassVar[dict[str, str]] = {}
    default_tuned_on: ClassVar[str] = "not tuned on any split"
    exact: ClassVar[bool] = False
    progress_unit: ClassVar[str] = "steps"
    progress_total_is_bound: ClassVar[bool] = False

    def check(self, model: nn.Module, update: ClientUpdate) -> list[Problem]:
        """Every reason this attack cannot run on ``(model, update)``, all at once."""
        problems: list[Problem] = []
        try:
            update.validate(model)
        except UpdateMismatchError as err:
            problems.append(Problem("update_mismatch", str(err)))
        if update.kind not in self.update_kinds:
            problems.append(Problem("not_applicable", f"it needs a {' or '.join(self.update_kinds)} update, "
                                                      f"not {update.kind}{self.kind_hint}"))
        reasons = (labels_available(model, update) if self.needs_labels else []) + self._check(model, update)
        if update.kind == "weight_delta" and not self.unrolls_local_training:
            reasons = delta_problems(update) + reasons
        return problems + [Problem("not_applicable", r) for r in reasons]

    def _check(self, model: nn.Module, update: ClientUpdate) -> list[str]:
        return []

    @abstractmethod
    def reconstruct(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
                    progress: Progress | None = None) -> Reconstruction:
        """Recover the client's inputs (``(num_examples, *shape)`` pixels in [0, 1])."""

    def run(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
            progress: Progress | None = None) -> Reconstruction:
        """``check`` then ``reconstruct``; raises with every reason when it cannot run.

        Raises:
            UpdateMismatchError: the only problem is that the update does not fit the model.
            NotApplicableError: the attack's requirements are not met (all reasons listed).
        """
        shape = check_shape(model, update, shape)
        problems = self.check(model, update)
        if problems:
            if all(p.kind == "update_mismatch" for p in problems):
                raise UpdateMismatchError("; ".join(map(str, problems)))
            raise NotApplicableError(f"attack {self.name!r}", [str(p) for p in problems])
        start = time.perf_counter()
        rec = self.reconstruct(model, update, shape=shape, progress=progress)
        rec.info.setdefault("attack", self.name)
        return Reconstruction(rec.inputs.detach().clamp(0, 1), rec.labels, rec.loss_history,
                              time.perf_counter() - start, rec.info)


def check_shape(model: nn.Module, update: ClientUpdate, shape: Sequence[int]) -> tuple[int, ...]:
    """Refuse a model, update or input shape an attack cannot use, before it runs (one line each).

    The shape must be ``(C, H, W)`` with positive sizes, within the pixel limit, and the model
    must accept one input of it (tried once in eval mode, every module's mode restored).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(update, ClientUpdate):
        raise ConfigError(f"update must be a ClientUpdate (ClientUpdate.from_gradients(...)), "
                          f"got {type(update).__name__}")
    ok = isinstance(shape, Sequence) and not isinstance(shape, str) and len(shape) == 3 and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in shape)
    if not ok:
        raise ConfigError(f"shape must be one input's (C, H, W) with positive integer sizes, got {shape!r}")
    shape = tuple(int(s) for s in shape)
    check_pixels(shape[1], shape[2], f"the input shape {shape}")
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *shape, dtype=next(model.parameters(), torch.zeros(())).dtype))
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"the model cannot run on the input shape {shape} ({first[:200]}); pass the "
                          "shape (C, H, W) of one input the model was built for") from None
    finally:
        for module, mode in modes.items():
            module.training = mode
    return shape
