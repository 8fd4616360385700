"""Refuse, once and before round 1, what can never work: an older-API strategy, an attack that never applies.

``AuditStrategy`` calls :func:`refuse_old_api` when it is built, and :func:`refuse_inapplicable`
when it is built (with the model's own weights and the fallback local training) and again at
``start`` (with the arrays the server sends in round 1 and the local training its train config
states). Each raises one error that lists every reason, instead of one failure per client per
round.

What ``check`` needs, and what the probe gives it: a Flower audit always sees FedAvg weight
deltas, never labels, and ``num-examples`` only once a client replies. The probe is therefore
a ``weight_delta`` update of the model's parameter shapes, without labels, of one example,
with the run's local training, and with small random entries that are never zero — a zero
probe would make rank- or sign-based checks (SPEAR's rank test) report problems no real update
has. So only what no update of this model could ever change is refused: the architecture
(SPEAR on a conv model, or on a model whose ``forward`` calls ``F.relu`` so that no ``nn.ReLU``
module follows the first ``nn.Linear``), the update kind, labels that cannot be restored from
this model, a delta the attack cannot read (Adam clients for single-step attacks).
Problems that depend on the batch (SPEAR's batch size against the layer width) are left to
each update.

Example:
    >>> import torch
    >>> from gradleak.core.registry import create_attack
    >>> conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                            torch.nn.Linear(144, 10))
    >>> try:
    ...     refuse_inapplicable(create_attack("spear"), conv, (1, 8, 8), None)
    ... except NotApplicableError as err:
    ...     print(str(err)[:79])
    the audit's attack 'spear' (checked once, before round 1, on this model) cannot
"""

from __future__ import annotations

import inspect
import io
from typing import Any

import torch
from torch import nn

from gradleak.core.errors import ConfigError, NotApplicableError
from gradleak.core.types import ClientUpdate, LocalTraining
from gradleak.experiment.scenario import make_attack


def refuse_old_api(inner: Any) -> None:
    """Raise ConfigError unless ``inner`` is a strategy of Flower's Message API (``flwr.serverapp.strategy``)."""
    old: tuple[type, ...] = ()
    try:
        from flwr.server.strategy import Strategy as OldStrategy

        old = (OldStrategy,)
    except ImportError:  # a later Flower without the older API
        pass
    name = f"{type(inner).__module__}.{type(inner).__qualname__}"
    if isinstance(inner, type):
        raise ConfigError(f"AuditStrategy wraps a strategy object, got the class {inner.__qualname__}; "
                          f"write {inner.__qualname__}(...)")
    if (old and isinstance(inner, old)) or not all(callable(getattr(inner, m, None))
                                                     for m in ("configure_train", "aggregate_train")):
        raise ConfigError(
            f"AuditStrategy wraps a strategy of Flower's Message API (configure_train/aggregate_train, "
            f"from flwr.serverapp.strategy), got {name}, a strategy of the older API "
            "(configure_fit/aggregate_fit, from flwr.server.strategy); use e.g. "
            "`from flwr.serverapp.strategy import FedAvg` and a ServerApp with @app.main()")


def probe_update(model: nn.Module, local: LocalTraining | None) -> ClientUpdate:
    """A weight delta of ``model``'s parameter shapes: one example, no labels, no zero entry, seeded."""
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        tensors[name] = (torch.where(r >= 0, r + 0.1, r - 0.1) * 1e-3).to(p.dtype)
    return ClientUpdate("weight_delta", tensors, 1, local or LocalTraining(), meta={"probe": True})


def refuse_inapplicable(attack: Any, model: nn.Module, shape: tuple[int, ...], local: LocalTraining | None) -> None:
    """Raise NotApplicableError (every reason) when ``attack`` can never run on ``model`` in this run.

    An attack object without ``check`` is not checked.
    """
    check = getattr(attack, "check", None)
    if check is None:
        return
    problems = [str(p) for p in check(model, probe_update(model, local)) if p.kind == "not_applicable"]
    if problems:
        name = getattr(attack, "name", type(attack).__name__)
        raise NotApplicableError(f"the audit's attack {name!r} (checked once, before round 1, on this model)",
                                 problems)


def build_attack(attack: Any, options: dict[str, Any], seed: int, budget: float | None) -> Any:
    """The attack object: ``attack`` itself, or the registry's, with ``max_seconds`` from ``budget`` if it takes one."""
    if not isinstance(attack, str):
        if options:
            raise ConfigError("attack_options only apply to an attack given by name")
        return attack
    from gradleak.core.registry import ATTACKS

    if budget is not None and "max_seconds" in inspect.signature(ATTACKS.get(attack)).parameters:
        options.setdefault("max_seconds", 0.9 * budget)  # the attack stops itself before the pool must
    return make_attack(attack, options, seed=seed)


def check_picklable(attack: Any, model: nn.Module) -> None:
    """Raise ConfigError when the attack or model cannot travel to a worker process."""
    from gradleak.integrations.flower.attackjob import run_attack

    try:
        torch.save((run_attack, attack, model), io.BytesIO())
    except Exception as err:
        raise ConfigError(f"pool='process' sends the attack and the model to worker processes, but they cannot be "
                          f"pickled ({err}); define them at module level, or use pool='thread'") from err
