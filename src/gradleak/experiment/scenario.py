"""A scenario: everything needed to repeat one run, checked before any work starts.

Example:
    >>> s = Scenario(attack="ig", dataset="digits", model="convnet", attack_options={"steps": 5})
    >>> s.validate()
    >>> build_attack(s).steps
    5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradleak.core.errors import ConfigError
from gradleak.core.registry import ATTACKS
from gradleak.core.types import LocalTraining
from gradleak.data import LABEL_MODES
from gradleak.defenses.base import build_defenses
from gradleak.defenses.pipeline import check_composition
from gradleak.experiment.model_state import parse_model_state
from gradleak.experiment.presets import apply_preset, preset_options

PROTOCOLS = ("fedsgd", "fedavg")
ADAPTIVE = (False, True, "faithful", "observed-mask")


@dataclass(frozen=True)
class Scenario:
    """Everything needed to repeat one run (written to ``config.json``).

    Args:
        attack, dataset, model: registry names.
        batch_size: client batch size.
        label_mode: ``random`` (duplicates allowed), ``distinct`` or ``same``.
        protocol: ``fedsgd`` (one gradient) or ``fedavg`` (weight delta after local SGD).
        local_lr, local_epochs, local_batch_size, local_steps: FedAvg's local training.
        labels: ``own`` (the default: the attack's own label step, labels do not leak),
            ``known`` (labels leak to the server: an upper-bound assumption), ``restore``,
            ``auto`` or a label-method name.
        mode: ``train`` or ``eval`` for BatchNorm/dropout during the client's pass.
        seed: every random choice (data, model init, noise, attack starts) flows from it.
        defenses: ``NAME:key=value`` specs applied in order to the update.
        attack_options, model_options, dataset_options: extra keyword arguments.
        model_state: ``untrained`` or ``trained:EPOCHS`` (trained on the training split, cached;
            the attacked batch then comes from the held-out split).
        checkpoint: a ``.safetensors`` / ``torch.save`` state dict to attack (weights only).
        share_buffers: the client also sends its BatchNorm running statistics.
        adaptive: the attacker copies the defenses' deterministic part onto its trial gradients:
            ``True`` (or ``"faithful"``: as the papers' adaptive attacks) or ``"observed-mask"``
            (the stronger variant: multiply by the observed non-zero mask for prune/topk).
        split: where the scored batch comes from: ``attack`` (always, for reported numbers) or
            ``validation`` (only to choose hyper-parameters).
        attack_preset: the attack's hyper-parameter preset (``default``, ``paper``, ``tiny``);
            ``attack_options`` override single values of it.
    """

    attack: str = "ig"
    dataset: str = "mnist"
    model: str = "convnet"
    batch_size: int = 1
    label_mode: str = "random"
    protocol: str = "fedsgd"
    local_lr: float = 0.1
    local_epochs: int = 1
    local_batch_size: int | None = None
    local_steps: int | None = None
    labels: str = "own"
    mode: str = "eval"
    seed: int = 0
    defenses: tuple[str, ...] = ()
    attack_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_state: str = "untrained"
    checkpoint: str | None = None
    share_buffers: bool = False
    adaptive: bool | str = False
    split: str = "attack"
    attack_preset: str = "default"

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid setting (names are checked by the registries)."""
        problems = []
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.label_mode not in LABEL_MODES:
            problems.append(f"label mode must be one of {', '.join(LABEL_MODES)}, got {self.label_mode!r}")
        if self.mode not in ("train", "eval"):
            problems.append(f"mode must be 'train' or 'eval', got {self.mode!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch size must be an integer >= 1, got {self.batch_size!r}")
        try:
            if parse_model_state(self.model_state) and self.checkpoint:
                problems.append("choose either model_state trained:EPOCHS or a checkpoint, not both")
        except ConfigError as err:
            problems.append(str(err))
        try:  # defense settings fail fast, before any data is loaded
            check_composition(build_defenses(list(self.defenses), seed=self.seed))
        except ConfigError as err:
            problems.append(str(err))
        if self.adaptive not in ADAPTIVE:
            problems.append(f"adaptive must be one of true, false, 'faithful', 'observed-mask', got {self.adaptive!r}")
        if self.split not in ("attack", "validation"):
            problems.append(f"split must be 'attack' (reported numbers) or 'validation' (choosing "
                            f"hyper-parameters), got {self.split!r}")
        if self.adaptive and not ATTACKS.get(self.attack).supports_adaptive:
            adaptive = [n for n in ATTACKS.names() if ATTACKS.get(n).supports_adaptive]
            problems.append(f"attack {self.attack!r} has no adaptive mode (a 'transform' option); "
                            f"use one of {', '.join(adaptive)} or drop --adaptive")
        try:
            preset_options(self.attack, self.attack_preset)
        except ConfigError as err:
            problems.append(str(err))
        if problems:
            raise ConfigError("; ".join(problems))

    def local_training(self) -> LocalTraining:
        """The FedAvg local-training settings."""
        return LocalTraining(self.local_lr, self.local_epochs, self.local_batch_size, self.local_steps)


def build_attack(scenario: Scenario, **extra: Any) -> Any:
    """The attack with the scenario's preset, seed and label setting filled in where it takes them
    (``extra``: options computed at run time, e.g. the adaptive attacker's ``transform``)."""
    return make_attack(scenario.attack, {**scenario.attack_options, **extra}, seed=scenario.seed,
                       labels=scenario.labels, preset=scenario.attack_preset)


def make_attack(name: str, options: dict[str, Any], *, seed: int, labels: str | None = None,
                preset: str = "default") -> Any:
    """Build attack ``name`` from ``preset`` overridden by ``options``, filling in ``seed`` (and
    ``labels``, unless ``own``: the attack's own label step) where it takes them.

    Example:
        >>> make_attack("ig", {"steps": 3}, seed=5).seed
        5
        >>> make_attack("ggl", {}, seed=0, preset="paper").optimizer
        'cma'
    """
    factory = ATTACKS.get(name)
    if labels not in (None, "own") and factory.takes_labels:  # the scenario's labels beat the preset's
        options = {"labels": labels, **options}
    options = apply_preset(name, preset, dict(options))
    if factory.takes_seed:
        options.setdefault("seed", seed)
    return ATTACKS.create(name, **options)


def scenario_from_dict(data: dict[str, Any]) -> Scenario:
    """A :class:`Scenario` from a plain dict (e.g. ``config.json``'s ``scenario``); unknown keys listed."""
    known = set(Scenario.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown scenario option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    values = dict(data)
    if "defenses" in values:
        values["defenses"] = tuple(values["defenses"])
    return Scenario(**values)
