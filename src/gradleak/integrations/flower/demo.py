"""A Flower app that trains a small model on embedded MNIST with FedAvg, audited by gradleak.

The ServerApp samples every client each round, sends the global arrays with a train config
(``lr``, ``local-epochs``, ``batch-size``), aggregates with ``FedAvg`` wrapped in
:class:`~gradleak.integrations.flower.AuditStrategy`, and evaluates the global model on held-out
digits. Each ClientApp holds ``examples_per_client`` digits (its partition, by the node's
``partition-id``) and runs real local SGD on them. In simulation a hook lets the clients record
their data (``truth_dir``), so the audit can score what it reconstructs.

:func:`run_demo` runs it with Flower's simulation engine (``gradleak flower-demo``);
``examples/flower_audit`` wraps the same apps for ``flwr run``.

Example:
    >>> summary = run_demo(DemoConfig(rounds=1, attack_options={"steps": 10}))  # doctest: +SKIP
    >>> [r["status"] for r in summary["records"]]                             # doctest: +SKIP
    ['ok', 'ok', 'ok']
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gradleak.core.errors import ConfigError
from gradleak.core.types import GroundTruth
from gradleak.data import load_dataset
from gradleak.experiment.outputs import check_out_dir, write_marker
from gradleak.experiment.runfolder import save_tensors, write_json
from gradleak.fl.client import local_sgd
from gradleak.integrations.flower.store import AuditFolderStore, AuditMemoryStore
from gradleak.integrations.flower.strategy import AuditStrategy, local_training_from_config, require_flwr
from gradleak.models import build_model

log = logging.getLogger(__name__)
EVAL_EXAMPLES = 500


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo federation (``flwr run`` reads them from ``[tool.flwr.app.config]``).

    Args:
        rounds, clients: FedAvg rounds and simulated clients (all sampled every round).
        examples_per_client: digits each client holds and trains on every round.
        dataset, model: registry names (an embedded dataset; ``mlp`` suits ``spear``).
        local_lr, local_epochs, local_batch_size: local SGD (batch size 0 = the whole local data).
        attack, attack_options: the server's audit attack (``spear`` gets ``max_seconds=60``
            unless set).
        audit: wrap FedAvg in AuditStrategy (``False`` gives the plain run to compare with).
        background: run attacks in a worker thread after each round.
        defenses: ``NAME:key=value`` specs the clients apply: update defenses (noise, clip, prune,
            quantize, ...) through ``defense_mod``; a training defense (``dpsgd``, ``mixup``)
            replaces the clients' plain local SGD.
        record_truth: let the clients record their data so the audit can be scored.
        compare_plain: first train the same federation with plain FedAvg (same seed, same
            initial model) and report how far the audited run's final model is from it.
        seed: data partition, model initialisation, local shuffling, attack starts.
    """

    rounds: int = 3
    clients: int = 3
    examples_per_client: int = 8
    dataset: str = "mnist"
    model: str = "mlp"
    local_lr: float = 0.1
    local_epochs: int = 1
    local_batch_size: int = 0
    attack: str = "ig"
    attack_options: dict[str, Any] = field(default_factory=dict)
    audit: bool = True
    background: bool = False
    defenses: tuple[str, ...] = ()
    record_truth: bool = True
    compare_plain: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [f"{name} must be >= 1, got {getattr(self, name)}"
                    for name in ("rounds", "clients", "examples_per_client", "local_epochs")
                    if getattr(self, name) < 1]
        if problems:
            raise ConfigError("flower demo: " + "; ".join(problems))

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
def _data(dataset: str, seed: int) -> tuple[Any, torch.Tensor]:
    ds = load_dataset(dataset)
    return ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))


def client_data(cfg: DemoConfig, partition_id: int) -> GroundTruth:
    """The digits client ``partition_id`` holds (disjoint across clients, seeded)."""
    ds, order = _data(cfg.dataset, cfg.seed)
    n = cfg.examples_per_client
    if (partition_id + 1) * n > len(ds) - EVAL_EXAMPLES:
        raise ConfigError(f"{cfg.clients} clients x {n} examples do not fit in {cfg.dataset!r}")
    idx = order[partition_id * n:(partition_id + 1) * n]
    return GroundTruth(ds.inputs[idx].clone(), ds.labels[idx].clone())


def _new_model(cfg: DemoConfig) -> torch.nn.Module:
    ds, _ = _data(cfg.dataset, cfg.seed)
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


def _run_config_defenses(msg: Any, context: Any, call_next: Any) -> Any:
    """The update defenses named by the run config's ``defenses`` (``flwr run``), as a client mod."""
    from gradleak.integrations.flower.mods import defense_mod

    c = DemoConfig.from_run_config(context.run_config)
    specs = split_defenses(c.defenses)[1]
    if not specs:
        return call_next(msg, context)
    return defense_mod(specs, seed=c.seed)(msg, context, call_next)


def build_client_app(cfg: DemoConfig | None = None, truth_dir: str | None = None) -> Any:
    """The ClientApp: load the global arrays, run local SGD on the partition, reply.

    ``cfg=None`` reads the settings from the run config (``flwr run``); ``truth_dir`` (or the
    run config's ``truth-dir``) turns on the simulation-only truth hook.
    """
    require_flwr()
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from gradleak.integrations.flower.mods import defense_mod

    if cfg is not None:
        specs = split_defenses(cfg.defenses)[1]
        mods = [defense_mod(specs, seed=cfg.seed)] if specs else []
    else:
        mods = [_run_config_defenses]
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg: Any, context: Any) -> Any:
        torch.set_num_threads(1)
        c = cfg or DemoConfig.from_run_config(context.run_config)
        partition = int(context.node_config.get("partition-id", 0))
        data = client_data(c, partition)
        model = _new_model(c)
        model.load_state_dict(next(iter(msg.content.array_records.values())).to_torch_state_dict())
        config = next(iter(msg.content.config_records.values()))
        server_round = int(config.get("server-round", 0))
        model.train()
        seed = c.seed * 1_000_003 + 1009 * server_round + partition
        training = split_defenses(c.defenses)[0]
        if training:  # DP-SGD / MixUp run inside the client's own training loop
            from gradleak.defenses.base import build_defenses

            build_defenses(training, seed=seed)[0].train(model, data.inputs, data.labels,
                                                         local_training_from_config(config), seed=seed)
        else:
            local_sgd(model, data.inputs, data.labels, local_training_from_config(config), seed=seed)
        with torch.no_grad():
            loss = F.cross_entropy(model(data.inputs), data.labels).item()
        where = truth_dir or str(context.run_config.get("truth-dir", ""))
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
            save_tensors(truth_path(where, server_round, context.node_id),
                         {"inputs": data.inputs, "labels": data.labels})
        metrics = MetricRecord({"train-loss": loss, "num-examples": len(data.labels)})
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
        return Message(content=content, reply_to=msg)

    return app


def _accuracy(cfg: DemoConfig, state: Mapping[str, torch.Tensor]) -> float:
    ds, order = _data(cfg.dataset, cfg.seed)
    idx = order[-EVAL_EXAMPLES:]
    model = _new_model(cfg)
    model.load_state_dict(dict(state))
    model.eval()
    with torch.no_grad():
        return (model(ds.inputs[idx]).argmax(1) == ds.labels[idx]).double().mean().item()


def build_server_app(cfg: DemoConfig | None = None, *, store: Any = None, truth_dir: str | None = None,
                     sink: dict[str, Any] | None = None) -> Any:
    """The ServerApp: FedAvg over every client, wrapped in AuditStrategy when ``cfg.audit``.

    ``cfg=None`` reads the settings from the run config (``flwr run``), where ``out-dir`` names
    the audit folder (replaced on each run) and ``truth-dir`` the truth hook's folder.

    ``sink`` (a dict, same process) receives ``final`` (the final global state dict),
    ``accuracy`` (per round) and ``records`` (the audit's summaries).
    """
    require_flwr()
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        c = cfg or DemoConfig.from_run_config(context.run_config)
        model = _new_model(c)
        ds, _ = _data(c.dataset, c.seed)
        strategy: Any = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=c.clients,
                               min_available_nodes=c.clients)
        where = truth_dir or str(context.run_config.get("truth-dir", ""))
        out = str(context.run_config.get("out-dir", "")) if store is None else ""
        audit_store = AuditFolderStore(out, overwrite=True) if out and c.audit else store
        if c.audit:
            options = dict(c.attack_options)
            if c.attack == "spear":  # a search budget, so that one hard update cannot stall a round
                options.setdefault("max_seconds", 60.0)
            strategy = AuditStrategy(strategy, model=model, shape=ds.shape, attack=c.attack,
                                     attack_options=options, store=audit_store,
                                     truth=truth_from_dir(where) if where else None,
                                     background=c.background, seed=c.seed,
                                     run_info={"dataset": c.dataset, "model": c.model,
                                               "defenses": list(c.defenses)})
        accuracy: dict[int, float] = {}

        def central_eval(server_round: int, arrays: Any) -> Any:
            accuracy[server_round] = _accuracy(c, arrays.to_torch_state_dict())
            return MetricRecord({"accuracy": accuracy[server_round]})

        def train_config() -> Any:
            return ConfigRecord({"lr": c.local_lr, "local-epochs": c.local_epochs,
                                 "batch-size": c.local_batch_size})

        def final(result: Any) -> dict[str, torch.Tensor]:
            return {k: v.clone() for k, v in result.arrays.to_torch_state_dict().items()}

        if c.compare_plain:  # the same federation, plain FedAvg, from the same initial model
            plain = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=c.clients,
                           min_available_nodes=c.clients)
            plain_final = final(plain.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                                            num_rounds=c.rounds, train_config=train_config()))
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                                num_rounds=c.rounds, train_config=train_config(), evaluate_fn=central_eval)
        if out and isinstance(audit_store, AuditFolderStore):
            audit_store.write_report({"config": asdict(c), "accuracy": accuracy})
            log.info("gradleak audit report: %s", Path(out) / "report.md")
        if sink is not None:
            sink["final"] = final(result)
            sink["accuracy"] = accuracy
            sink["records"] = strategy.records if c.audit else []
            if c.compare_plain:
                sink["final_plain"] = plain_final

    return app


def run_demo(cfg: DemoConfig | None = None, out_dir: str | Path | None = None, *,
             overwrite: bool = False) -> dict[str, Any]:
    """Run the audited Flower app in Flower's simulation engine and return its summary.

    Args:
        cfg: the federation's settings.
        out_dir: where to write the audit (run folders per round and client, ``index.json``,
            ``report.md``, ``final_model.safetensors``); ``None`` keeps results in memory.
        overwrite: replace an earlier audit's files in ``out_dir``.

    Returns:
        ``{"config", "accuracy", "records", "final", "seconds", "out_dir", "report"}`` with
        ``final`` the final global state dict (plus ``final_plain`` and ``max_abs_diff_vs_plain``
        with ``compare_plain``).
    """
    cfg = cfg or DemoConfig()
    require_flwr()
    from flwr.simulation import run_simulation

    store: Any = AuditMemoryStore()
    if out_dir is not None:
        check_out_dir(out_dir, overwrite=overwrite)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_marker(Path(out_dir), ["audit", "final_model.safetensors", "summary.json"], kind="flower-demo")
        store = AuditFolderStore(Path(out_dir) / "audit", overwrite=overwrite) if cfg.audit else None
    sink: dict[str, Any] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gradleak-truth-") as tmp:
        truth_dir = tmp if cfg.record_truth else None
        run_simulation(server_app=build_server_app(cfg, store=store, truth_dir=truth_dir, sink=sink),
                       client_app=build_client_app(cfg, truth_dir=truth_dir), num_supernodes=cfg.clients,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    if "final" not in sink:
        raise RuntimeError("the Flower simulation ended without a final model; see Flower's log above")
    summary = {"config": asdict(cfg), "accuracy": sink["accuracy"], "records": sink["records"],
               "final": sink["final"], "seconds": time.perf_counter() - start, "out_dir": None,
               "report": None}
    if "final_plain" in sink:
        summary["final_plain"] = sink["final_plain"]
        summary["max_abs_diff_vs_plain"] = max(
            (sink["final"][k].double() - v.double()).abs().max().item() for k, v in sink["final_plain"].items())
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / "final_model.safetensors", sink["final"])
        facts = {"config": asdict(cfg), "accuracy": sink["accuracy"], "seconds": summary["seconds"],
                 "max_abs_diff_vs_plain": summary.get("max_abs_diff_vs_plain")}
        write_json(out / "summary.json", {**facts, "records": sink["records"]})
        if isinstance(store, AuditFolderStore):
            summary["report"] = str(store.write_report(facts))
        summary["out_dir"] = str(out)
    return summary
