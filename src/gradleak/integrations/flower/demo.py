"""A Flower app that trains a small model on embedded MNIST with FedAvg, audited by gradleak.

The ServerApp samples every client each round, sends the global arrays with a train config
(``lr``, ``local-epochs``, ``batch-size``, and ``momentum``/``weight-decay``/``proximal-mu``/
``optimizer`` when set), aggregates with ``FedAvg`` wrapped in
:class:`~gradleak.integrations.flower.AuditStrategy`, and evaluates the global model on held-out
digits. Each ClientApp holds ``examples_per_client`` digits (its partition, by the node's
``partition-id``) and runs real local training on them, as the train config says. So that the
audit can score what it reconstructs, clients may send their data inside their replies
(:mod:`~gradleak.integrations.flower.clientinfo`): :func:`run_demo` lets them (a simulation);
under ``flwr run`` a SuperNode's operator must allow it with ``--node-config
"gradleak-share-truth=true"``, or, in a local simulation, ``truth-dir`` names a folder they
write to.

:func:`run_demo` runs it with Flower's simulation engine (``gradleak flower-demo``);
``examples/flower_audit`` wraps the same apps for ``flwr run``.

Example:
    >>> summary = run_demo(DemoConfig(rounds=1, attack_options={"steps": 10}))  # doctest: +SKIP
    >>> [r["status"] for r in summary["records"]]                             # doctest: +SKIP
    ['ok', 'ok', 'ok']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gradleak.experiment.outputs import check_writable_out_dir, write_marker
from gradleak.experiment.runfolder import save_tensors, write_json
from gradleak.fl.client import local_sgd
from gradleak.integrations.flower.clientinfo import annotate_reply
from gradleak.integrations.flower.democonfig import (
    EVAL_EXAMPLES,
    DemoConfig,
    client_data,
    data,
    new_model,
    preflight,
    split_defenses,
    truth_from_dir,
    truth_path,
)
from gradleak.integrations.flower.store import AuditFolderStore, AuditMemoryStore
from gradleak.integrations.flower.strategy import AuditStrategy, local_training_from_config, require_flwr

__all__ = ["DemoConfig", "build_client_app", "build_server_app", "client_data", "run_demo", "split_defenses",
           "truth_from_dir", "truth_path"]
log = logging.getLogger(__name__)


def _run_config_defenses(msg: Any, context: Any, call_next: Any) -> Any:
    """The update defenses named by the run config's ``defenses`` (``flwr run``), as a client mod."""
    from gradleak.integrations.flower.mods import defense_mod

    c = DemoConfig.from_run_config(context.run_config)
    specs = split_defenses(c.defenses)[1]
    if not specs:
        return call_next(msg, context)
    return defense_mod(specs, seed=c.seed)(msg, context, call_next)


def build_client_app(cfg: DemoConfig | None = None, truth_dir: str | None = None,
                     share_truth: bool | None = None) -> Any:
    """The ClientApp: load the global arrays, train locally on the partition as the config says, reply.

    ``cfg=None`` reads the settings from the run config (``flwr run``). The reply carries the
    ``gradleak`` ConfigRecord (:func:`~gradleak.integrations.flower.clientinfo.annotate_reply`):
    the partition id, and the client's data only if ``share_truth`` (or, when it is ``None``,
    the node config's ``gradleak-share-truth``) allows it. ``truth_dir`` (or the run config's
    ``truth-dir``) makes clients also write their data to a folder (a local simulation only).
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
        mine = client_data(c, partition)
        model = new_model(c)
        model.load_state_dict(next(iter(msg.content.array_records.values())).to_torch_state_dict())
        config = next(iter(msg.content.config_records.values()))
        server_round = int(config.get("server-round", 0))
        model.train()
        seed = c.seed * 1_000_003 + 1009 * server_round + partition
        local = local_training_from_config(config)
        training = split_defenses(c.defenses)[0]
        if training:  # DP-SGD / MixUp run inside the client's own training loop
            from gradleak.defenses.base import build_defenses

            build_defenses(training, seed=seed)[0].train(model, mine.inputs, mine.labels, local, seed=seed)
        else:
            local_sgd(model, mine.inputs, mine.labels, local, seed=seed)
        with torch.no_grad():
            loss = F.cross_entropy(model(mine.inputs), mine.labels).item()
        where = truth_dir or str(context.run_config.get("truth-dir", ""))
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
            save_tensors(truth_path(where, server_round, context.node_id),
                         {"inputs": mine.inputs, "labels": mine.labels})
        metrics = MetricRecord({"train-loss": loss, "num-examples": len(mine.labels)})
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
        annotate_reply(content, context, inputs=mine.inputs, labels=mine.labels, share_truth=share_truth)
        return Message(content=content, reply_to=msg)

    return app


def _accuracy(cfg: DemoConfig, state: Mapping[str, torch.Tensor]) -> float:
    ds, order = data(cfg.dataset, cfg.seed)
    idx = order[-EVAL_EXAMPLES:]
    model = new_model(cfg)
    model.load_state_dict(dict(state))
    model.eval()
    with torch.no_grad():
        return (model(ds.inputs[idx]).argmax(1) == ds.labels[idx]).double().mean().item()


def build_server_app(cfg: DemoConfig | None = None, *, store: Any = None, truth_dir: str | None = None,
                     sink: dict[str, Any] | None = None) -> Any:
    """The ServerApp: FedAvg over every client, wrapped in AuditStrategy when ``cfg.audit``.

    ``cfg=None`` reads the settings from the run config (``flwr run``), where ``out-dir`` names
    the audit folder (replaced on each run) and ``truth-dir`` the truth hook's folder. With
    ``record_truth`` the audit scores with the data clients send in their replies.

    ``sink`` (a dict, same process) receives ``final`` (the final global state dict),
    ``accuracy`` (per round), ``records`` (the audit's summaries) and ``strategy``.
    """
    require_flwr()
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        c = cfg or DemoConfig.from_run_config(context.run_config)
        model = new_model(c)
        ds, _ = data(c.dataset, c.seed)
        strategy: Any = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=c.clients,
                               min_available_nodes=c.clients)
        where = truth_dir or str(context.run_config.get("truth-dir", ""))
        out = str(context.run_config.get("out-dir", "")) if store is None else ""
        audit_store = AuditFolderStore(out, overwrite=True) if out and c.audit else store
        accuracy: dict[int, float] = {}
        if c.audit:
            strategy = AuditStrategy(strategy, model=model, shape=ds.shape, attack=c.attack,
                                     attack_options=dict(c.attack_options), store=audit_store,
                                     truth=truth_from_dir(where) if where else None, collect_truth=c.record_truth,
                                     wait=c.wait, pool=c.pool, workers=c.workers,
                                     attack_seconds=c.attack_seconds or None, round_seconds=c.round_seconds or None,
                                     seed=c.seed, device=c.device,
                                     run_info={"dataset": c.dataset, "model": c.model, "defenses": list(c.defenses)})
            strategy.facts.update(config=asdict(c), accuracy=accuracy)
            if sink is not None:
                sink["strategy"] = strategy

        def central_eval(server_round: int, arrays: Any) -> Any:
            accuracy[server_round] = _accuracy(c, arrays.to_torch_state_dict())
            return MetricRecord({"accuracy": accuracy[server_round]})

        def final(result: Any) -> dict[str, torch.Tensor]:
            return {k: v.clone() for k, v in result.arrays.to_torch_state_dict().items()}

        if c.compare_plain:  # the same federation, plain FedAvg, from the same initial model
            plain = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=c.clients,
                           min_available_nodes=c.clients)
            plain_final = final(plain.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                                            num_rounds=c.rounds, train_config=ConfigRecord(c.train_config())))
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=c.rounds,
                                train_config=ConfigRecord(c.train_config()), evaluate_fn=central_eval)
        if out and isinstance(audit_store, AuditFolderStore):
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

    The simulated clients send their data in their replies (``cfg.record_truth``), so every
    reconstruction is scored without a shared folder.

    Args:
        cfg: the federation's settings.
        out_dir: where to write the audit (run folders per round and client, ``index.json``,
            ``report.md``, ``report.html``, ``final_model.safetensors``); ``None`` keeps results in memory.
        overwrite: replace an earlier audit's files in ``out_dir``.

    Returns:
        ``{"config", "accuracy", "records", "final", "seconds", "out_dir", "report"}`` with
        ``final`` the final global state dict (plus ``final_plain`` and ``max_abs_diff_vs_plain``
        with ``compare_plain``).
    """
    cfg = cfg or DemoConfig()
    require_flwr()
    from flwr.simulation import run_simulation

    preflight(cfg)  # names and options refused before a folder or a simulation exists
    store: Any = AuditMemoryStore()
    if out_dir is not None:
        check_writable_out_dir(out_dir, overwrite=overwrite)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_marker(Path(out_dir), ["audit", "final_model.safetensors", "summary.json"], kind="flower-demo")
        store = AuditFolderStore(Path(out_dir) / "audit", overwrite=overwrite) if cfg.audit else None
    sink: dict[str, Any] = {}
    start = time.perf_counter()
    run_simulation(server_app=build_server_app(cfg, store=store, sink=sink),
                   client_app=build_client_app(cfg, share_truth=cfg.record_truth), num_supernodes=cfg.clients,
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
            summary["report"] = str(store.root / "report.md")
        summary["out_dir"] = str(out)
    return summary
