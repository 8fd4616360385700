"""The demo federation's settings and data: 8 MNIST digits per client, a held-out set for accuracy.

:class:`DemoConfig` is what ``gradleak flower-demo`` and ``flwr run`` (``[tool.flwr.app.config]``)
set; :func:`client_data` is client ``partition_id``'s disjoint, seeded share; :func:`train_config`
is what the server sends each round. The apps themselves are in
:mod:`~gradleak.integrations.flower.demo`.

Example:
    >>> DemoConfig(local_momentum=0.9, local_weight_decay=5e-4).train_config()
    {'lr': 0.1, 'local-epochs': 1, 'batch-size': 0, 'momentum': 0.9, 'weight-decay': 0.0005}
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from gradleak.core.errors import ConfigError
from gradleak.core.limits import MAX_SEED
from gradleak.core.types import GroundTruth, LocalTraining
from gradleak.core.validate import int_problem, real_problem
from gradleak.data import load_dataset
from gradleak.models import build_model

EVAL_EXAMPLES = 500


MAX_COUNT = 10_000
"""Rounds, clients, examples per client and workers of the demo federation beyond this are refused."""


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo federation (``flwr run`` reads them from ``[tool.flwr.app.config]``).

    Args:
        rounds, clients: FedAvg rounds and simulated clients (all sampled every round).
        examples_per_client: digits each client holds and trains on every round.
        dataset, model: registry names (an embedded dataset; ``mlp`` suits ``spear``).
        local_lr, local_epochs, local_batch_size: local training (batch size 0 = the whole local data).
        local_optimizer, local_momentum, local_weight_decay, proximal_mu: the clients' optimiser
            (``sgd``/``adam``/``adamw``), SGD momentum, weight decay, FedProx's term (sent in the
            train config; the audit reads them from there).
        attack, attack_options: the server's audit attack.
        audit: wrap FedAvg in AuditStrategy (``False`` gives the plain run to compare with).
        wait: training waits for each round's attacks (at most ``round_seconds``).
        pool, workers, attack_seconds, round_seconds: the audit's pool and budgets (0: none).
        defenses: ``NAME:key=value`` specs the clients apply: update defenses (noise, clip, prune,
            quantize, ...) through ``defense_mod``; a training defense (``dpsgd``, ``mixup``)
            replaces the clients' plain local SGD.
        record_truth: score the audit with the data clients send in their replies (run_demo
            lets its simulated clients send it; under ``flwr run`` only SuperNodes whose
            node config allows it do).
        compare_plain: first train the same federation with plain FedAvg (same seed, same
            initial model) and report how far the audited run's final model is from it.
        seed: data partition, model initialisation, local shuffling, attack starts.
        device: where the server's attacks run (``auto``, ``cpu``, ``cuda``, ...).
    """

    rounds: int = 3
    clients: int = 3
    examples_per_client: int = 8
    dataset: str = "mnist"
    model: str = "mlp"
    local_lr: float = 0.1
    local_epochs: int = 1
    local_batch_size: int = 0
    local_optimizer: str = "sgd"
    local_momentum: float = 0.0
    local_weight_decay: float = 0.0
    proximal_mu: float = 0.0
    attack: str = "ig"
    attack_options: dict[str, Any] = field(default_factory=dict)
    audit: bool = True
    wait: bool = False
    pool: str = "thread"
    workers: int = 1
    attack_seconds: float = 60.0
    round_seconds: float = 0.0
    defenses: tuple[str, ...] = ()
    record_truth: bool = True
    compare_plain: bool = False
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        problems = [p for name in ("rounds", "clients", "examples_per_client", "workers")
                    if (p := int_problem(name, getattr(self, name), low=1, high=MAX_COUNT))]
        if problem := int_problem("local_batch_size", self.local_batch_size, low=0):
            problems.append(problem + " (0 = the whole local data)")
        if problem := int_problem("seed", self.seed, low=0, high=MAX_SEED):
            problems.append(problem)
        for name in ("attack_seconds", "round_seconds"):
            if problem := real_problem(name, getattr(self, name), low=0):
                problems.append(problem + " (0: no budget)")
        if self.pool not in ("thread", "process"):
            problems.append(f"pool must be 'thread' or 'process', got {self.pool!r}")
        try:  # the clients' optimiser, checked as the audit will read it
            LocalTraining(lr=self.local_lr, epochs=self.local_epochs, optimizer=self.local_optimizer,
                          momentum=self.local_momentum, weight_decay=self.local_weight_decay,
                          prox_mu=self.proximal_mu)
        except ConfigError as err:
            problems.append(str(err))
        if problems:
            raise ConfigError("flower demo: " + "; ".join(problems))

    def train_config(self) -> dict[str, Any]:
        """The train config the server sends each round (optimiser keys only when not the default)."""
        config: dict[str, Any] = {"lr": self.local_lr, "local-epochs": self.local_epochs,
                                  "batch-size": self.local_batch_size}
        extra = {"optimizer": (self.local_optimizer, "sgd"), "momentum": (self.local_momentum, 0.0),
                 "weight-decay": (self.local_weight_decay, 0.0), "proximal-mu": (self.proximal_mu, 0.0)}
        config.update({k: v for k, (v, default) in extra.items() if v != default})
        return config

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> DemoConfig:
        """Settings from Flower's run config (keys are the field names with dashes, plus
        ``num-server-rounds``, ``num-clients``, ``attack-steps`` (0: the attack's default) and
        ``;``-separated ``defenses``).

        Example:
            >>> DemoConfig.from_run_config({"num-server-rounds": 2, "defenses": "clip:norm=1;noise"}).defenses
            ('clip:norm=1', 'noise')
        """
        names = {f.name for f in fields(cls)} - {"attack_options", "defenses"}
        values: dict[str, Any] = {n: run_config[n.replace("_", "-")] for n in names
                                  if n.replace("_", "-") in run_config}
        values.setdefault("rounds", run_config.get("num-server-rounds", 3))
        values.setdefault("clients", run_config.get("num-clients", 3))
        if int(run_config.get("attack-steps", 0) or 0) > 0:
            values["attack_options"] = {"steps": int(run_config["attack-steps"])}
        specs = str(run_config.get("defenses", ""))
        values["defenses"] = tuple(s.strip() for s in specs.split(";") if s.strip())
        return cls(**values)


@functools.lru_cache(maxsize=4)
def data(dataset: str, seed: int) -> tuple[Any, torch.Tensor]:
    """The dataset and its seeded order (clients take slices from the front, evaluation the back)."""
    ds = load_dataset(dataset)
    return ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))


def client_data(cfg: DemoConfig, partition_id: int) -> GroundTruth:
    """The digits client ``partition_id`` holds (disjoint across clients, seeded)."""
    ds, order = data(cfg.dataset, cfg.seed)
    n = cfg.examples_per_client
    if (partition_id + 1) * n > len(ds) - EVAL_EXAMPLES:
        raise ConfigError(f"{cfg.clients} clients x {n} examples do not fit in {cfg.dataset!r}")
    idx = order[partition_id * n:(partition_id + 1) * n]
    return GroundTruth(ds.inputs[idx].clone(), ds.labels[idx].clone())


def new_model(cfg: DemoConfig) -> torch.nn.Module:
    """The demo's model, initialised from ``cfg.seed``."""
    ds, _ = data(cfg.dataset, cfg.seed)
    return build_model(cfg.model, shape=ds.shape, num_classes=ds.num_classes, seed=cfg.seed)


def truth_path(truth_dir: str | Path, server_round: int, node_id: int) -> Path:
    """Where the simulation-only truth hook keeps client ``node_id``'s data of ``server_round``."""
    return Path(truth_dir) / f"round-{server_round:03d}-node-{node_id}.safetensors"


def truth_from_dir(truth_dir: str | Path) -> Any:
    """A ``truth(round, node_id)`` hook reading what the clients recorded (``None`` if absent)."""
    from safetensors.torch import load_file

    def truth(server_round: int, node_id: int) -> GroundTruth | None:
        path = truth_path(truth_dir, server_round, node_id)
        if not path.exists():
            return None
        data = load_file(str(path))
        return GroundTruth(data["inputs"], data["labels"])

    return truth


def split_defenses(specs: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``(training, update)`` specs: training defenses change local SGD, the others the update.

    Example:
        >>> split_defenses(("dpsgd:noise=1.0", "clip:norm=1"))
        (['dpsgd:noise=1.0'], ['clip:norm=1'])
    """
    from gradleak.core.registry import DEFENSES
    from gradleak.defenses.base import parse_spec

    training, update = [], []
    for spec in specs:
        factory = DEFENSES.get(parse_spec(spec)[0])
        is_training = bool(getattr(factory, "trains", False))
        (training if is_training else update).append(spec)
    if len(training) > 1:
        raise ConfigError(f"at most one training defense (dpsgd, mixup) per client, got {training}")
    return training, update


def preflight(cfg: DemoConfig) -> None:
    """Refuse what would fail only once the simulation runs: unknown dataset, model or attack
    names, bad attack options, bad defense specs, more clients than the data holds."""
    from gradleak.core.registry import DATASETS
    from gradleak.defenses.base import build_defenses
    from gradleak.experiment.scenario import make_attack
    from gradleak.experiment.user_model import check_model

    DATASETS.get(cfg.dataset)
    check_model(cfg.model)
    make_attack(cfg.attack, dict(cfg.attack_options), seed=cfg.seed)
    training, update = split_defenses(cfg.defenses)
    build_defenses(training + update, seed=cfg.seed)
    client_data(cfg, cfg.clients - 1)

