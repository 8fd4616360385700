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
* ``batches_clients`` — ``run_many`` reconstructs several clients' updates in one batched graph
  (``reconstruct_many``), each result equal to its own ``run`` to float tolerance; otherwise
  ``run_many`` runs them one after another;
* ``cpu_only`` — it always runs on the CPU (the update is moved there; results say so).

Devices: ``run(..., device=...)`` moves a copy of the model and the update to that device
(``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); without ``device`` the attack runs where the
model's parameters are. Every tensor an attack creates lives there; random starts are drawn on
the CPU from the attack's seeded generator and then moved (the same seed starts from the same
images on every device). The reconstruction always comes back on the CPU.

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

import copy
import numbers
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from gradleak.core.device import model_device, reconstruction_to_cpu, resolve_device, update_to
from gradleak.core.errors import ConfigError, NotApplicableError, UpdateMismatchError
from gradleak.core.limits import check_pixels
from gradleak.core.results import Problem
from gradleak.core.types import ClientUpdate, Progress, Reconstruction
from gradleak.inversion.gradients import delta_problems
from gradleak.labels.resolve import labels_available


class Attack:
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
    batches_clients: ClassVar[bool] = False
    cpu_only: ClassVar[bool] = False
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.reconstruct is Attack.reconstruct and cls.reconstruct_many is Attack.reconstruct_many:
            raise TypeError(f"attack class {cls.__name__} must implement reconstruct or reconstruct_many")

    def _check(self, model: nn.Module, update: ClientUpdate) -> list[str]:
        return []

    def reconstruct(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
                    progress: Progress | None = None) -> Reconstruction:
        """Recover the client's inputs (``(num_examples, *shape)`` pixels in [0, 1]).

        An attack implements this, or ``reconstruct_many`` (then this is its one-client case);
        :meth:`__init_subclass__` refuses a class that implements neither.
        """
        return self.reconstruct_many(model, [update], shape=shape, progress=progress)[0]

    def reconstruct_many(self, model: nn.Module, updates: Sequence[ClientUpdate], *, shape: Sequence[int],
                         progress: Progress | None = None) -> list[Reconstruction]:
        """Several clients' updates of one model (same ``batch_key``); by default one after another."""
        return [self.reconstruct(model, u, shape=shape, progress=progress) for u in updates]

    def batches(self) -> bool:
        """Whether ``run_many`` shares one graph across clients with these options (``batches_clients``)."""
        return self.batches_clients

    def batch_key(self, update: ClientUpdate) -> Hashable:
        """Updates with equal keys can be reconstructed in one batched graph."""
        return (update.kind, update.num_examples, update.buffers is not None, update.labels is not None)

    def warm_up(self) -> None:
        """One-off work (imports) done before the clock starts; nothing by default."""

    def run(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
            progress: Progress | None = None, device: Any = None) -> Reconstruction:
        """``check`` then ``reconstruct``; raises with every reason when it cannot run.

        Args:
            device: where to run (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``, a ``torch.device``);
                ``None``: where the model is. The result is on the CPU either way.

        Raises:
            UpdateMismatchError: the only problem is that the update does not fit the model.
            NotApplicableError: the attack's requirements are not met (all reasons listed).
            DeviceError: a device this machine does not have.
        """
        return self.run_many(model, [update], shape=shape, progress=progress, device=device)[0]

    def run_many(self, model: nn.Module, updates: Sequence[ClientUpdate], *, shape: Sequence[int],
                 progress: Progress | None = None, device: Any = None) -> list[Reconstruction]:
        """Reconstruct several clients' updates of the same model (e.g. every client of a round).

        With ``batches_clients``, updates with equal ``batch_key`` share one batched graph (the
        per-call overhead that dominates small models is paid once); each result equals
        ``run`` on that update alone, to float tolerance. Each result's ``seconds`` is its
        share of its group's wall time; ``info["batched"]`` is the group's size.

        Raises:
            ConfigError: ``updates`` is a single update, a string or a dict, not an iterable of updates.
            UpdateMismatchError, NotApplicableError: as ``run``, naming the update (by index) at fault.
        """
        if isinstance(updates, (ClientUpdate, str, bytes, Mapping)) or not isinstance(updates, Iterable):
            raise ConfigError(f"run_many takes a list of ClientUpdate, got {type(updates).__name__}; "
                              "for one update call run(model, update, shape=...)")
        updates = list(updates)
        if updates:  # the trial forward once: every update is of the same model and shape
            shape = check_shape(model, updates[0], shape)
        for i, update in enumerate(updates):
            check_update_type(update)
            self._raise_problems(model, update, f" (update {i})" if len(updates) > 1 else "")
        target = torch.device("cpu") if self.cpu_only else (
            resolve_device(device) if device is not None else model_device(model))
        if model_device(model) != target:
            model = copy.deepcopy(model).to(target)
        updates = [update_to(u, target) for u in updates]
        self.warm_up()
        groups: dict[Hashable, list[int]] = {}
        for i, update in enumerate(updates):
            groups.setdefault(self.batch_key(update) if self.batches() else i, []).append(i)
        out: list[Reconstruction | None] = [None] * len(updates)
        for members in groups.values():
            start = time.perf_counter()
            recs = self.reconstruct_many(model, [updates[i] for i in members], shape=shape, progress=progress)
            seconds = (time.perf_counter() - start) / len(members)
            for i, rec in zip(members, recs, strict=True):
                rec = reconstruction_to_cpu(rec)
                info = {"attack": self.name, **rec.info, "device": str(target)}
                if len(members) > 1:
                    info["batched"] = len(members)
                out[i] = Reconstruction(rec.inputs.clamp(0, 1), rec.labels, rec.loss_history, seconds, info)
        return out  # type: ignore[return-value]

    def _raise_problems(self, model: nn.Module, update: ClientUpdate, where: str) -> None:
        problems = self.check(model, update)
        if problems:
            if all(p.kind == "update_mismatch" for p in problems):
                raise UpdateMismatchError("; ".join(map(str, problems)) + where)
            raise NotApplicableError(f"attack {self.name!r}{where}", [str(p) for p in problems])


def check_shape(model: nn.Module, update: ClientUpdate, shape: Sequence[int]) -> tuple[int, ...]:
    """Refuse a model, update or input shape an attack cannot use, before it runs (one line each).

    The shape must be ``(C, H, W)`` with positive sizes, within the pixel limit, and the model
    must accept one input of it (tried once in eval mode, every module's mode restored).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_update_type(update)
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
            param = next(model.parameters(), torch.zeros(()))
            model(torch.zeros(1, *shape, dtype=param.dtype, device=param.device))
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"the model cannot run on the input shape {shape} ({first[:200]}); pass the "
                          "shape (C, H, W) of one input the model was built for") from None
    finally:
        for module, mode in modes.items():
            module.training = mode
    return shape


def check_update_type(update: Any) -> None:
    """Refuse anything but a :class:`ClientUpdate` in one line."""
    if not isinstance(update, ClientUpdate):
        raise ConfigError(f"update must be a ClientUpdate (ClientUpdate.from_gradients(...)), "
                          f"got {type(update).__name__}")
