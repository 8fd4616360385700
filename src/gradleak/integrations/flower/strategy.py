"""Audit a real Flower run: the server attacks each client update while training goes on.

:class:`AuditStrategy` wraps any strategy of Flower's Message API (``flwr`` 1.41). Each round it
keeps a copy of the arrays and train config it sends to every node; it queues one attack per
reply on a bounded pool (:mod:`~gradleak.integrations.flower.executor`; an attack that batches
clients gets the whole round as one ``run_many`` job, on ``device``) — the weight delta is
reply − sent, the clients' local training is read from the config the server itself sent — and
hands the very same reply objects to the inner strategy (whose aggregate is returned, bit for bit).

* Training never waits for the audit unless ``wait=True``, and then at most ``round_seconds``;
  each attack has ``attack_seconds`` (the ``process`` pool terminates an attack over budget).
* Every update seen gets one record: ``ok``, ``skipped``, ``failed``, ``timeout`` or
  ``cancelled``, with its reason. Progress goes through Flower's logger; the store's report is
  rewritten after every round and at the end, also when the run stops (``flwr stop``, Ctrl+C,
  an exception: pending attacks are then cancelled).
* An older-API strategy, or an attack that can never apply to the model, is refused before
  round 1 with one error (:mod:`~gradleak.integrations.flower.applicability`).

Example:
    >>> from flwr.serverapp.strategy import FedAvg                    # doctest: +SKIP
    >>> strategy = AuditStrategy(FedAvg(), model=net, shape=(1, 28, 28), attack="ig",
    ...                          attack_options={"steps": 200}, store="runs/audit")  # doctest: +SKIP
    >>> result = strategy.start(grid=grid, initial_arrays=ArrayRecord(net.state_dict()),
    ...                         train_config=ConfigRecord({"lr": 0.1}))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradleak.core.device import resolve_device
from gradleak.core.errors import ConfigError
from gradleak.core.types import GroundTruth, LocalTraining
from gradleak.integrations.flower.applicability import (
    build_attack,
    check_picklable,
    refuse_inapplicable,
    refuse_old_api,
)
from gradleak.integrations.flower.arguments import check_arguments
from gradleak.integrations.flower.attackjob import AttackJob, RoundJob, run_job, split_outcome
from gradleak.integrations.flower.clientinfo import client_info, unpack_truth
from gradleak.integrations.flower.executor import AuditExecutor, Job, Outcome
from gradleak.integrations.flower.progress import LOGGER as log
from gradleak.integrations.flower.progress import log_record, log_round
from gradleak.integrations.flower.replies import (
    CONFIG_KEYS,
    Skip,
    align,
    local_training_from_config,
    read_update,
    require_flwr,
    select_replies,
    to_tensors,
)
from gradleak.integrations.flower.store import AuditFolderStore, AuditMemoryStore, AuditRecord, AuditSQLiteStore
from gradleak.metrics import evaluate

__all__ = ["CONFIG_KEYS", "AuditStrategy", "local_training_from_config", "require_flwr", "to_tensors"]

TruthHook = Callable[[int, int], GroundTruth | None]
"""``truth(round, node_id)``: the client's real data (simulation only), or ``None``."""


class AuditStrategy:
    """A Flower strategy wrapper that attacks every client update it aggregates.

    Args:
        inner: the Message-API strategy doing the real work (e.g. ``flwr.serverapp.strategy.FedAvg()``).
        model: the architecture the clients train; the arrays' keys are its ``state_dict`` keys
            (or the same entries in order, e.g. keys ``"0", "1", ...``).
        shape: one input's shape ``(C, H, W)``.
        attack: a registry name (built with ``attack_options`` and ``seed``) or an Attack object.
        attack_options: keyword arguments of the attack.
        rounds: which rounds to audit (``None``: all).
        clients: which replies to audit: ``None`` (all), an int ``k`` (the first ``k`` by node
            id) or a collection of node ids.
        store: a folder path, a ``.sqlite``/``.db`` path (sweep rows), a store object with ``add``
            and ``summaries`` (and optionally ``write_report``), or ``None`` (in memory).
        mode: ``train`` or ``eval`` — the BatchNorm/dropout mode the clients train in.
        local_training: settings for what the train config does not carry.
        config_keys: override train-config keys of :data:`CONFIG_KEYS`.
        truth: the simulation-only ground-truth hook ``truth(round, node_id)``.
        collect_truth: score with the truth clients send in their replies when their owners
            allowed it (:mod:`~gradleak.integrations.flower.clientinfo`); evaluation runs only.
        wait: training waits for each round's attacks (at most ``round_seconds``).
        pool: ``thread`` or ``process`` (spawned workers; attacks over budget are terminated).
        workers: attacks running at once.
        attack_seconds: budget per attack (``None``: none); also passed as ``max_seconds`` to a
            named attack that takes it (spear) unless set in ``attack_options``.
        round_seconds: budget per round for all its attacks (``None``: none).
        seed: the attack's seed.
        device: where the attacks run (``auto``, ``cpu``, ``cuda``, ...; default the CPU).
        run_info: extra facts written into every record's config (e.g. dataset and model names).
    """

    def __init__(self, inner: Any, *, model: nn.Module, shape: tuple[int, ...], attack: Any = "ig",
                 attack_options: Mapping[str, Any] | None = None, rounds: Collection[int] | None = None,
                 clients: int | Collection[int] | None = None, store: Any = None, mode: str = "train",
                 local_training: LocalTraining | None = None, config_keys: Mapping[str, str] | None = None,
                 truth: TruthHook | None = None, collect_truth: bool = False, wait: bool = False,
                 pool: str = "thread", workers: int = 1, attack_seconds: float | None = 300.0,
                 round_seconds: float | None = None, seed: int = 0,
                 run_info: Mapping[str, Any] | None = None, device: Any = None) -> None:
        flwr = require_flwr()
        refuse_old_api(inner)
        flwr.serverapp.strategy.Strategy.register(type(self))
        check_arguments(model=model, shape=shape, mode=mode, local_training=local_training, seed=seed,
                         rounds=rounds, clients=clients, inner=inner, pool=pool, workers=workers,
                         attack_seconds=attack_seconds, round_seconds=round_seconds)
        self.inner, self.model, self.shape = inner, copy.deepcopy(model).cpu(), tuple(shape)
        self.attack = build_attack(attack, options := dict(attack_options or {}), seed, attack_seconds)
        refuse_inapplicable(self.attack, self.model, self.shape, local_training)
        self.rounds, self.clients, self.truth, self.seed = None if rounds is None else set(rounds), clients, truth, seed
        self.wait, self.collect_truth, self.mode, self.local_training = wait, collect_truth, mode, local_training
        self.device = None if device is None else resolve_device(device)
        self.config_keys = {**CONFIG_KEYS, **(config_keys or {})}
        if isinstance(store, (str, Path)):
            sqlite = Path(store).suffix in (".sqlite", ".db", ".sqlite3")
            store = AuditSQLiteStore(store) if sqlite else AuditFolderStore(store)
        self.store = AuditMemoryStore() if store is None else store
        self._config = {"attack": getattr(self.attack, "name", type(self.attack).__name__),
                        "attack_options": options, "shape": list(self.shape), "mode": mode, "seed": seed,
                        "model": type(model).__name__, "labels": "auto", "defenses": [],
                        "pool": pool, "workers": workers, "attack_seconds": attack_seconds,
                        "round_seconds": round_seconds, "wait": wait, "device": str(self.device or "cpu"),
                        **dict(run_info or {})}
        if pool == "process":
            check_picklable(self.attack, self.model)
        self._executor = AuditExecutor(run_job, pool=pool, workers=workers, attack_seconds=attack_seconds,
                                       round_seconds=round_seconds, on_outcome=self._on_outcome,
                                       on_round=self._round_done)
        self._sent: dict[tuple[int, int], tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
        self._queued: dict[tuple[int, int], AuditRecord] = {}
        self._truths: dict[tuple[int, int], GroundTruth] = {}
        self._warned_truth: set[int] = set()
        self.audit_wait: dict[int, float] = {}
        """Seconds ``aggregate_train`` waited for the audit, per round (``wait=True`` only)."""
        self.facts: dict[str, Any] = {}
        """Extra facts for the report (e.g. accuracy per round), read each time it is written."""
        self.state, self._closed, self._started = "running", False, time.time()

    # -- what Flower calls --------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Iterable[Any]:
        """The inner strategy's train messages, after a copy of each one's arrays and config is kept."""
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        if self._audited_round(server_round):
            try:
                self._remember(server_round, messages)
            except Exception as err:  # an audit problem must never stop training
                log.warning("gradleak audit: could not copy what round %d sent: %s", server_round, err)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> tuple[Any, Any]:
        """Aggregate with the inner strategy, queue the round's attacks, wait for them only if asked."""
        replies = list(replies)
        jobs: list[tuple[Any, Any]] = []
        if self._audited_round(server_round):
            try:
                jobs = self._prepare(server_round, replies)
            except Exception as err:  # an audit problem must never stop training
                log.warning("gradleak audit: round %d could not be read: %s", server_round, err)
        self._sent = {k: v for k, v in self._sent.items() if k[0] != server_round}
        if self._audited_round(server_round):
            self._submit(server_round, jobs)  # queued first: even if aggregation raises, they are recorded
        result = self.inner.aggregate_train(server_round, replies)
        if jobs and self.wait:
            start = time.monotonic()
            self._executor.wait_round(server_round)
            self.audit_wait[server_round] = time.monotonic() - start
        return result

    def configure_evaluate(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Iterable[Any]:
        """Delegated to the inner strategy."""
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Any]) -> Any:
        """Delegated to the inner strategy."""
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        """Log the inner strategy's summary and the audit's settings."""
        self.inner.summary()
        log.info("gradleak audit: %s", {k: v for k, v in self._config.items() if k not in ("labels", "defenses")})

    def start(self, grid: Any, initial_arrays: Any, *args: Any, **kwargs: Any) -> Any:
        """Flower's round loop (``Strategy.start``) on this wrapper.

        Before round 1 the attack is checked once against the arrays sent in round 1 and the
        train config's local training. At the end the queued attacks are finished (within their
        budgets); if the run stops early (``flwr stop``, a signal, an exception) they are
        cancelled instead. The report is written either way.
        """
        flwr = require_flwr()
        base = flwr.serverapp.strategy.Strategy.start
        bound = inspect.signature(base).bind(self, grid, initial_arrays, *args, **kwargs)
        self._check_start(initial_arrays, bound.arguments.get("train_config"))
        _on_flower_exit(lambda: self.close(cancel=True, why="Flower is shutting the ServerApp down"))
        try:
            result = base(self, grid, initial_arrays, *args, **kwargs)
        except BaseException as err:
            self.close(cancel=True, why=f"{type(err).__name__}: {err}".rstrip(": "))
            raise
        self.close()
        return result

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- results --------------------------------------------------------------------------
    @property
    def records(self) -> list[dict[str, Any]]:
        """Every audited reply's summary so far (round, node, partition, status, reason, metrics)."""
        return self.store.summaries()

    def ready(self, timeout: float | None = None) -> bool:
        """Block until the worker processes have started (``pool="process"``; seconds of importing torch)."""
        return self._executor.ready(timeout)

    def close(self, *, cancel: bool = False, why: str = "") -> None:
        """Finish (or, with ``cancel``, cancel) the queued attacks and write the report; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(cancel=cancel)
        self.state = f"stopped ({why})" if cancel else "finished"
        path = self._write_report()
        rows = self.records
        log.info("gradleak audit %s: %d update(s): %s%s", self.state, len(rows),
                 ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in
                           ("ok", "failed", "timeout", "cancelled", "skipped")), f"; report: {path}" if path else "")

    # -- internals ------------------------------------------------------------------------
    def _check_start(self, initial_arrays: Any, train_config: Any) -> None:
        model = copy.deepcopy(self.model)
        try:
            state = align(to_tensors(initial_arrays), model)
        except Skip as why:
            raise ConfigError(f"initial_arrays do not fit `model`: {why}") from None
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in state.items()})
        local = self.local_training
        if train_config is not None and self.config_keys["lr"] in train_config:
            local = local_training_from_config(dict(train_config), self.config_keys, self.local_training)
        refuse_inapplicable(self.attack, model, self.shape, local)

    def _audited_round(self, server_round: int) -> bool:
        return self.rounds is None or server_round in self.rounds

    def _remember(self, server_round: int, messages: list[Any]) -> None:
        cache: dict[int, dict[str, torch.Tensor]] = {}
        for msg in messages:
            records = list(msg.content.array_records.values())
            if len(records) != 1:
                log.warning("gradleak audit: round %d sends %d ArrayRecords to node %d; expected one",
                            server_round, len(records), msg.metadata.dst_node_id)
                continue
            key = id(records[0])
            if key not in cache:
                cache[key] = to_tensors(records[0])
            config: dict[str, Any] = {}
            for record in msg.content.config_records.values():
                config.update(dict(record))
            self._sent[(server_round, int(msg.metadata.dst_node_id))] = (cache[key], config)

    def _prepare(self, server_round: int, replies: list[Any]) -> list[tuple[Any, AttackJob]]:
        jobs: list[tuple[Any, AttackJob]] = []
        weight_key = getattr(self.inner, "weighted_by_key", "num-examples")
        for reply in select_replies(replies, self.clients):
            node = int(reply.metadata.src_node_id)
            record = AuditRecord(server_round, node, "ok", attack=self._config["attack"], config=self._config)
            try:
                info = client_info(reply)
                record.partition_id = info.get("partition-id")
                self._take_truth(server_round, node, info)
                if (server_round, node) not in self._sent:
                    raise Skip("no train message was sent to this node this round (or it could not be copied)")
                sent, config = self._sent[(server_round, node)]
                update, state = read_update(reply, sent, config, self.model, weight_key=weight_key,
                                            keys=self.config_keys, fallback=self.local_training,
                                            meta={"round": server_round, "node_id": node, "source": "flower"})
            except Skip as why:
                record.status, record.reason = "skipped", str(why)
                self._store(record)
                log_record(record.summary())
                continue
            record.num_examples = update.num_examples
            record.local_training = vars(update.local_training) if update.local_training else None
            self._queued[(server_round, node)] = record
            jobs.append(((server_round, node), AttackJob(self.attack, self.model, state, update, self.shape,
                                                         self.mode == "train", self.device)))
        if len(jobs) > 1 and getattr(self.attack, "batches_clients", False):  # the round in one batched pass
            return [((server_round, "round"), RoundJob([k for k, _ in jobs], [j for _, j in jobs]))]
        return jobs

    def _submit(self, server_round: int, jobs: list[tuple[Any, AttackJob]]) -> None:
        try:
            backlog = self._executor.backlog()
            self._executor.submit(server_round, jobs)
        except Exception as err:  # e.g. the audit was closed: record them, never raise into training
            for one in [k for key, job in jobs for k in getattr(job, "keys", [key])]:
                record = self._queued.pop(one)
                record.status, record.reason = "failed", f"the attack could not be queued: {err}"
                self._store(record)
            jobs = []
        else:
            count, attack = sum(len(getattr(job, "keys", [key])) for key, job in jobs), self._config["attack"]
            log.info("gradleak audit: round %d: %d update(s) queued for %s%s%s", server_round, count, attack,
                     " as one batched pass (run_many)" if any(isinstance(j, RoundJob) for _, j in jobs) else "",
                     f" ({backlog} still queued or running from earlier rounds)" if backlog else "")
        if not jobs:
            self._round_done(server_round)

    def _take_truth(self, server_round: int, node: int, info: dict[str, Any]) -> None:
        if "truth" not in info:
            return
        if not self.collect_truth:
            if node not in self._warned_truth:
                self._warned_truth.add(node)
                log.warning("gradleak audit: node %d sends its training data in its replies (gradleak-share-truth);"
                            " it is ignored here — switch it off outside simulation/evaluation runs", node)
            return
        try:
            truth = unpack_truth(info["truth"])
        except Exception as err:
            log.warning("gradleak audit: round %d, node %d: its truth cannot be read: %s", server_round, node, err)
            return
        if truth is not None:
            self._truths[(server_round, node)] = truth

    def _on_outcome(self, job: Job, outcome: Outcome) -> None:
        for key, one in split_outcome(job, outcome):  # a batched round: one outcome per update
            self._record(key, one)

    def _record(self, key: Any, outcome: Outcome) -> None:
        record = self._queued.pop(key)
        record.status, record.reason, record.seconds = outcome.status, outcome.reason, outcome.seconds
        if outcome.status == "ok":
            rec = outcome.result
            record.reconstruction, record.seconds = rec, rec.seconds
            self._score(record)
        self._store(record)
        log_record(record.summary())

    def _score(self, record: AuditRecord) -> None:
        rec, key = record.reconstruction, (record.round, record.node_id)
        try:
            truth = self._truths.pop(key, None)
            if truth is None and self.truth is not None:
                truth = self.truth(record.round, record.node_id)
        except Exception as err:  # scoring is optional; the reconstruction is kept
            truth, record.reason = None, f"truth hook failed: {type(err).__name__}: {err}"
        if truth is None or rec is None:
            return
        record.truth = truth
        if tuple(truth.inputs.shape) == tuple(rec.inputs.shape):
            record.metrics = evaluate(rec, truth)
        else:
            record.reason = (f"truth has {tuple(truth.inputs.shape)} inputs, reconstruction "
                             f"{tuple(rec.inputs.shape)}: not scored")

    def _round_done(self, server_round: int) -> None:
        log_round(server_round, self.records)
        self._write_report()

    def _write_report(self) -> str | None:
        writer = getattr(self.store, "write_report", None)
        if writer is None:
            return None
        facts = {"audit": self.state, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._started)),
                 "settings": self._config, "audit_wait_seconds": self.audit_wait, **self.facts}
        try:
            return str(writer(facts))
        except Exception as err:
            log.warning("gradleak audit: could not write the report: %s", err)
            return None

    def _store(self, record: AuditRecord) -> None:
        try:
            self.store.add(record)
        except Exception as err:
            log.warning("gradleak audit: could not store round %d, node %d: %s", record.round, record.node_id, err)


def _on_flower_exit(handler: Callable[[], None]) -> None:
    """Run ``handler`` when Flower exits the process (``flwr stop``, SIGINT/SIGTERM), before its force-exit timer."""
    try:
        from flwr.supercore.exit import add_exit_handler
    except ImportError:  # pragma: no cover - another Flower version
        return
    add_exit_handler(handler, run_before_force_exit=True)
