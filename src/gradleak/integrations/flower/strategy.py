"""Audit a real Flower run: the server attacks each client update while training goes on.

:class:`AuditStrategy` wraps any strategy of Flower's Message API (``flwr`` 1.41–1.42,
``flwr.serverapp.strategy``). Each round it keeps a copy of the global arrays and of the train
config it sends to every node; when the replies come back it reads each reply's arrays and
``num-examples``, builds a :class:`~gradleak.core.types.ClientUpdate` (weight delta = reply − sent;
:class:`~gradleak.core.types.LocalTraining` from the config the server itself sent), runs the
attack, stores the result, and hands the very same reply objects to the inner strategy. The
aggregated model is the inner strategy's, bit for bit.

A reply that cannot be read as an update (an error reply, no arrays, wrong names or shapes, no
``num-examples``) is skipped with a logged and stored reason; an attack that raises is logged
and stored as ``failed``. With ``background=True`` attacks run in one worker thread after the
round is aggregated, so a slow attack never delays training; ``start`` (or :meth:`close`)
waits for them at the end.

Example:
    >>> from flwr.serverapp.strategy import FedAvg                    # doctest: +SKIP
    >>> strategy = AuditStrategy(FedAvg(), model=net, shape=(1, 28, 28), attack="ig",
    ...                          attack_options={"steps": 200}, store="runs/audit")  # doctest: +SKIP
    >>> result = strategy.start(grid=grid, initial_arrays=ArrayRecord(net.state_dict()),
    ...                         train_config=ConfigRecord({"lr": 0.1}))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradleak.core.errors import ConfigError, MissingDependencyError
from gradleak.core.limits import MAX_SEED
from gradleak.core.types import ClientUpdate, GroundTruth, LocalTraining
from gradleak.experiment.scenario import make_attack
from gradleak.integrations.flower.store import (
    AuditFolderStore,
    AuditMemoryStore,
    AuditRecord,
    AuditSQLiteStore,
)
from gradleak.metrics import evaluate

log = logging.getLogger(__name__)

TruthHook = Callable[[int, int], GroundTruth | None]
"""``truth(round, node_id)``: the client's real data (simulation only), or ``None``."""

CONFIG_KEYS = {"lr": "lr", "epochs": "local-epochs", "steps": "local-steps", "batch_size": "batch-size"}
"""Train-config keys the local-training settings are read from (override with ``config_keys``)."""


def require_flwr() -> Any:
    """Import and return ``flwr``, or raise :class:`MissingDependencyError` naming the extra.

    Flower's anonymous telemetry is switched off (``FLWR_TELEMETRY_ENABLED=0``) unless the user
    set that variable: gradleak never talks to the network.
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    try:
        import flwr
        import flwr.serverapp.strategy  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError("flwr", "flower") from err
    return flwr


class _Skip(Exception):
    """A reply that cannot be read as a client update (the message says why)."""


def to_tensors(record: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """An ArrayRecord (or any mapping of Flower ``Array``) as CPU tensors (copies)."""
    return {k: torch.from_numpy(v.numpy().copy()) for k, v in record.items()}


def local_training_from_config(config: Mapping[str, Any], keys: Mapping[str, str] = CONFIG_KEYS,
                               fallback: LocalTraining | None = None) -> LocalTraining:
    """The clients' local SGD settings from the train config the server sent.

    A batch size of 0 or less means the whole local data set. Settings missing from the config
    are taken from ``fallback``; a missing learning rate without a fallback raises ConfigError.

    Example:
        >>> local_training_from_config({"lr": 0.1, "local-epochs": 2, "batch-size": 0})
        LocalTraining(lr=0.1, epochs=2, batch_size=None, steps=None)
    """
    base = fallback or LocalTraining()
    if keys["lr"] not in config and fallback is None:
        raise ConfigError(f"the train config has no {keys['lr']!r} (the clients' learning rate); send it "
                          "in train_config, or pass local_training=LocalTraining(...) to AuditStrategy")
    batch = config.get(keys["batch_size"], base.batch_size)
    steps = config.get(keys["steps"], base.steps)
    return LocalTraining(lr=float(config.get(keys["lr"], base.lr)),
                         epochs=int(config.get(keys["epochs"], base.epochs)),
                         batch_size=int(batch) if batch and int(batch) > 0 else None,
                         steps=int(steps) if steps and int(steps) > 0 else None)


def _check_arguments(*, model: Any, shape: Any, mode: Any, local_training: Any, seed: Any, rounds: Any,
                     clients: Any, inner: Any) -> None:
    """Refuse every unusable AuditStrategy argument at once, before the federation starts."""
    problems = []
    if not isinstance(model, nn.Module):
        problems.append(f"model must be the torch.nn.Module the clients train, got {type(model).__name__}")
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        problems.append(f"shape must be one input's (C, H, W) with positive integers, got {shape!r}")
    if mode not in ("train", "eval"):
        problems.append(f"mode must be 'train' or 'eval', got {mode!r}")
    if local_training is not None and not isinstance(local_training, LocalTraining):
        problems.append(f"local_training must be a LocalTraining(...) or None, got {type(local_training).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        problems.append(f"seed must be an integer between 0 and 2**62, got {seed!r}")
    if rounds is not None and not (isinstance(rounds, Collection) and all(isinstance(r, int) for r in rounds)):
        problems.append(f"rounds must be a collection of round numbers or None, got {rounds!r}")
    if clients is not None and not (isinstance(clients, int) and not isinstance(clients, bool) and clients >= 1
                                    or isinstance(clients, Collection) and not isinstance(clients, str)):
        problems.append(f"clients must be a count >= 1, a collection of node ids or None, got {clients!r}")
    if not all(hasattr(inner, m) for m in ("configure_train", "aggregate_train")):
        problems.append(f"inner must be a Flower strategy (e.g. FedAvg()), got {type(inner).__name__}")
    if problems:
        raise ConfigError("AuditStrategy: " + "; ".join(problems))


class AuditStrategy:
    """A Flower strategy wrapper that attacks every client update it aggregates.

    Args:
        inner: the strategy doing the real work (e.g. ``flwr.serverapp.strategy.FedAvg()``).
        model: the architecture the clients train (its weights are replaced each round by the
            global arrays sent); the arrays' keys are its ``state_dict`` keys (or the same
            entries in order, e.g. keys ``"0", "1", ...``).
        shape: one input's shape ``(C, H, W)``.
        attack: a registry name (built with ``attack_options`` and ``seed``) or an Attack object.
        attack_options: keyword arguments of the attack.
        rounds: which rounds to audit (``None``: all).
        clients: which replies to audit: ``None`` (all), an int ``k`` (the first ``k`` replies
            by node id) or a collection of node ids.
        store: a folder path (run folders + ``index.json``), a ``.sqlite``/``.db`` path (rows in
            the sweeps' results database), a store object with ``add`` and ``summaries``, or
            ``None`` (kept in memory, see :attr:`records`).
        mode: ``train`` or ``eval`` — the BatchNorm/dropout mode the clients train in.
        local_training: settings to use where the train config does not carry them.
        config_keys: override the train-config keys of :data:`CONFIG_KEYS`.
        truth: the simulation-only ground-truth hook ``truth(round, node_id)``.
        background: run attacks in a worker thread after each round.
        seed: the attack's seed.
        run_info: extra facts written into every record's config (e.g. dataset and model names).
    """

    def __init__(self, inner: Any, *, model: nn.Module, shape: tuple[int, ...], attack: Any = "ig",
                 attack_options: Mapping[str, Any] | None = None, rounds: Collection[int] | None = None,
                 clients: int | Collection[int] | None = None, store: Any = None, mode: str = "train",
                 local_training: LocalTraining | None = None, config_keys: Mapping[str, str] | None = None,
                 truth: TruthHook | None = None, background: bool = False, seed: int = 0,
                 run_info: Mapping[str, Any] | None = None) -> None:
        flwr = require_flwr()
        flwr.serverapp.strategy.Strategy.register(type(self))
        _check_arguments(model=model, shape=shape, mode=mode, local_training=local_training, seed=seed,
                         rounds=rounds, clients=clients, inner=inner)
        self.inner, self.model, self.shape = inner, copy.deepcopy(model).cpu(), tuple(shape)
        self.attack = _build_attack(attack, dict(attack_options or {}), seed)
        self.rounds = None if rounds is None else set(rounds)
        self.clients = clients
        self.mode, self.local_training, self.truth, self.seed = mode, local_training, truth, seed
        self.config_keys = {**CONFIG_KEYS, **(config_keys or {})}
        if store is None:
            store = AuditMemoryStore()
        elif isinstance(store, (str, Path)):
            sqlite = Path(store).suffix in (".sqlite", ".db", ".sqlite3")
            store = AuditSQLiteStore(store) if sqlite else AuditFolderStore(store)
        self.store = store
        self._config = {"attack": getattr(self.attack, "name", type(self.attack).__name__),
                        "attack_options": dict(attack_options or {}), "shape": list(self.shape),
                        "mode": mode, "seed": seed, "model": type(model).__name__, "labels": "auto",
                        "defenses": [], **dict(run_info or {})}
        self._sent: dict[tuple[int, int], tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="gradleak-audit") if background else None
        self._futures: list[Future[None]] = []

    # -- what Flower calls --------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Iterable[Any]:
        """The inner strategy's train messages, after a copy of each one's arrays and config is kept."""
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        if self._audited_round(server_round):
            try:
                self._remember(server_round, messages)
            except Exception as err:  # an audit problem must never stop training
                log.warning("audit: could not copy what round %d sent: %s", server_round, err)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> tuple[Any, Any]:
        """Attack the replies (or queue the attacks), then return the inner strategy's aggregate."""
        replies = list(replies)
        jobs: list[Callable[[], None]] = []
        if self._audited_round(server_round):
            try:
                jobs = self._prepare(server_round, replies)
            except Exception as err:  # an audit problem must never stop training
                log.warning("audit: round %d could not be read: %s", server_round, err)
        self._sent = {k: v for k, v in self._sent.items() if k[0] != server_round}
        if self._executor is None:
            for job in jobs:
                job()
            return self.inner.aggregate_train(server_round, replies)
        result = self.inner.aggregate_train(server_round, replies)
        self._futures += [self._executor.submit(job) for job in jobs]
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
        log.info("gradleak audit: %s", self._config)

    def start(self, grid: Any, initial_arrays: Any, *args: Any, **kwargs: Any) -> Any:
        """Flower's round loop (``Strategy.start``) on this wrapper; waits for queued attacks at the end."""
        flwr = require_flwr()
        try:
            return flwr.serverapp.strategy.Strategy.start(self, grid, initial_arrays, *args, **kwargs)
        finally:
            self.close()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- results --------------------------------------------------------------------------
    @property
    def records(self) -> list[dict[str, Any]]:
        """Every audited reply's summary so far (round, node, status, reason, metrics)."""
        return self.store.summaries()

    def close(self) -> None:
        """Wait for queued attacks (background mode); safe to call more than once."""
        for future in self._futures:
            future.result()
        self._futures = []

    # -- internals ------------------------------------------------------------------------
    def _audited_round(self, server_round: int) -> bool:
        return self.rounds is None or server_round in self.rounds

    def _remember(self, server_round: int, messages: list[Any]) -> None:
        cache: dict[int, dict[str, torch.Tensor]] = {}
        for msg in messages:
            content = msg.content
            records = list(content.array_records.values())
            if len(records) != 1:
                log.warning("audit: round %d sends %d ArrayRecords to node %d; expected one",
                            server_round, len(records), msg.metadata.dst_node_id)
                continue
            key = id(records[0])
            if key not in cache:
                cache[key] = to_tensors(records[0])
            config: dict[str, Any] = {}
            for record in content.config_records.values():
                config.update(dict(record))
            self._sent[(server_round, int(msg.metadata.dst_node_id))] = (cache[key], config)

    def _selected(self, replies: list[Any]) -> list[Any]:
        ordered = sorted(replies, key=lambda m: int(m.metadata.src_node_id))
        if self.clients is None:
            return ordered
        if isinstance(self.clients, int):
            return ordered[:self.clients]
        chosen = {int(c) for c in self.clients}
        return [m for m in ordered if int(m.metadata.src_node_id) in chosen]

    def _prepare(self, server_round: int, replies: list[Any]) -> list[Callable[[], None]]:
        jobs: list[Callable[[], None]] = []
        for reply in self._selected(replies):
            node = int(reply.metadata.src_node_id)
            try:
                update, state = self._read_reply(server_round, node, reply)
            except _Skip as why:
                log.warning("audit: round %d, node %d skipped: %s", server_round, node, why)
                self._store(AuditRecord(server_round, node, "skipped", str(why), config=self._config))
                continue
            jobs.append(lambda r=server_round, n=node, u=update, s=state: self._attack(r, n, u, s))
        return jobs

    def _read_reply(self, server_round: int, node: int, reply: Any) -> tuple[ClientUpdate, dict[str, Any]]:
        if reply.has_error():
            raise _Skip(f"the client replied with an error (code {reply.error.code}): {reply.error.reason}")
        if not reply.has_content():
            raise _Skip("the reply has no content")
        if (server_round, node) not in self._sent:
            raise _Skip("no train message was sent to this node this round (or it could not be copied)")
        sent, config = self._sent[(server_round, node)]
        arrays = list(reply.content.array_records.values())
        if len(arrays) != 1:
            raise _Skip(f"the reply carries {len(arrays)} ArrayRecords; expected exactly one")
        try:
            returned = to_tensors(arrays[0])
        except Exception as err:
            raise _Skip(f"the reply's arrays cannot be read as numpy arrays: {err}") from err
        before, after = self._align(sent), self._align(returned)
        n = self._num_examples(reply)
        try:
            local = local_training_from_config(config, self.config_keys, self.local_training)
        except ConfigError as err:
            raise _Skip(str(err)) from err
        params = [name for name, _ in self.model.named_parameters()]
        buffers = {k: v for k, v in after.items() if k not in params}
        update = ClientUpdate.from_weights(
            {k: before[k].float() for k in params}, {k: after[k].float() for k in params}, n, local,
            buffers=buffers or None, meta={"round": server_round, "node_id": node, "source": "flower"})
        return update, before

    def _align(self, arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Arrays keyed and shaped like the model's ``state_dict`` (by name, else by position)."""
        expected = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        if set(arrays) != set(expected):
            if len(arrays) != len(expected):
                missing, extra = sorted(set(expected) - set(arrays))[:3], sorted(set(arrays) - set(expected))[:3]
                raise _Skip(f"{len(arrays)} arrays for a model with {len(expected)} state_dict entries "
                            f"(missing {missing}, unexpected {extra}); is `model` the architecture the "
                            "clients train?")
            arrays = dict(zip(expected, arrays.values(), strict=True))
        wrong = [f"{k}: {tuple(v.shape)} != {expected[k]}" for k, v in arrays.items()
                 if tuple(v.shape) != expected[k]]
        if wrong:
            raise _Skip("array shapes do not fit the model: " + "; ".join(wrong[:4]))
        return arrays

    def _num_examples(self, reply: Any) -> int:
        key = getattr(self.inner, "weighted_by_key", "num-examples")
        for record in reply.content.metric_records.values():
            if key in record:
                value = record[key]
                if not isinstance(value, (int, float)) or value < 1:
                    raise _Skip(f"{key!r} must be a positive number, got {value!r}")
                return int(value)
        raise _Skip(f"the reply has no {key!r} metric (the number of examples the client trained on)")

    def _attack(self, server_round: int, node: int, update: ClientUpdate, state: dict[str, Any]) -> None:
        record = AuditRecord(server_round, node, "ok", attack=self._config["attack"],
                             num_examples=update.num_examples, config=self._config,
                             local_training=vars(update.local_training) if update.local_training else None)
        try:
            model = copy.deepcopy(self.model)
            dtypes = {k: v.dtype for k, v in self.model.state_dict().items()}
            model.load_state_dict({k: v.to(dtypes[k]) for k, v in state.items()})
            model.train(self.mode == "train")
            rec = self.attack.run(model, update, shape=self.shape)
            record.reconstruction, record.seconds = rec, rec.seconds
            try:
                truth = self.truth(server_round, node) if self.truth is not None else None
            except Exception as err:  # scoring is optional; the reconstruction is kept
                truth, record.reason = None, f"truth hook failed: {type(err).__name__}: {err}"
            if truth is not None:
                record.truth = truth
                if tuple(truth.inputs.shape) == tuple(rec.inputs.shape):
                    record.metrics = evaluate(rec, truth)
                else:
                    record.reason = (f"truth has {tuple(truth.inputs.shape)} inputs, reconstruction "
                                     f"{tuple(rec.inputs.shape)}: not scored")
            log.info("audit: round %d, node %d attacked in %.1f s%s", server_round, node, rec.seconds,
                     f", PSNR {record.metrics['psnr']:.1f}" if record.metrics else "")
        except Exception as err:  # a failing attack never breaks training
            log.warning("audit: attack on round %d, node %d failed: %s", server_round, node, err)
            record.status, record.reason = "failed", f"{type(err).__name__}: {err}"
        self._store(record)

    def _store(self, record: AuditRecord) -> None:
        try:
            self.store.add(record)
        except Exception as err:
            log.warning("audit: could not store round %d, node %d: %s", record.round, record.node_id, err)


def _build_attack(attack: Any, options: dict[str, Any], seed: int) -> Any:
    if not isinstance(attack, str):
        if options:
            raise ConfigError("attack_options only apply to an attack given by name")
        return attack
    return make_attack(attack, options, seed=seed)
