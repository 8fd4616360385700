"""The audit of a production federation (issue 18): stops, refusals, progress, per-client reports, simulation.

The executor's own budget tests are in ``test_flower_executor.py``. The one timing bound here (a
round's wait in Flower's simulation stays within its budget plus a few seconds, while the attack
alone would run for hours) is the claim the issue asks to show.
"""

from __future__ import annotations

import logging
import threading

import pytest
import torch
import torch.nn.functional as F
from flower_fakes import (  # the fakes in flower_fakes.py
    HAVE_FLWR,
    SHAPE,
    ArrayRecord,
    ConfigRecord,
    FedAvg,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
    Recorder,
    fedavg3,
    needs_flwr,
    small_mlp,
)
from torch import nn

from gradleak.core.errors import ConfigError, NotApplicableError
from gradleak.core.types import LocalTraining


def _round(strategy, config, *, partitions=True, share=False, server_round=1):
    """configure_train → clients (real local training as ``config`` says, annotated replies) → aggregate_train."""
    from gradleak.fl.client import local_sgd
    from gradleak.integrations.flower import annotate_reply
    from gradleak.integrations.flower.replies import local_training_from_config

    model = small_mlp()
    messages = list(strategy.configure_train(server_round, ArrayRecord(model.state_dict()), ConfigRecord(config),
                                             Grid()))
    replies, truths = [], {}
    for i, msg in enumerate(sorted(messages, key=lambda m: m.metadata.dst_node_id)):
        client = small_mlp()
        client.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(i))
        y = torch.tensor([i, i + 1])
        local_sgd(client, x, y, local_training_from_config(dict(msg.content["config"])))
        content = RecordDict({"arrays": ArrayRecord(client.state_dict()), "metrics": MetricRecord({"num-examples": 2})})

        class Ctx:
            node_config = {"partition-id": 2 - i} if partitions else {}

        annotate_reply(content, Ctx(), inputs=x, labels=y, share_truth=share)
        replies.append(Message(content, reply_to=msg))
        truths[msg.metadata.dst_node_id] = x
    return replies, strategy.aggregate_train(server_round, replies), truths


@pytest.fixture(autouse=True)
def _task_identity():
    if HAVE_FLWR:
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


@needs_flwr
def test_an_older_api_strategy_is_refused_at_construction():
    from flwr.server.strategy import FedAvg as OldFedAvg

    from gradleak.integrations.flower import AuditStrategy

    with pytest.raises(ConfigError, match="older API .*flwr.serverapp.strategy"):
        AuditStrategy(OldFedAvg(), model=small_mlp(), shape=SHAPE, attack=Recorder())


class _FunctionalReLU(nn.Module):
    """An MLP whose forward calls F.relu: no nn.ReLU module follows the first Linear."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


@needs_flwr
@pytest.mark.parametrize("model, reason", [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10)), "is Conv2d, not nn.Linear"),
    (_FunctionalReLU(), "followed by Linear, not ReLU"),
])
def test_an_attack_that_can_never_apply_is_refused_once_at_construction(model, reason):
    from gradleak.integrations.flower import AuditStrategy

    with pytest.raises(NotApplicableError, match=f"'spear' \\(checked once, before round 1.*{reason}"):
        AuditStrategy(fedavg3(), model=model, shape=SHAPE, attack="spear")


@needs_flwr
def test_start_refuses_before_round_1_what_the_train_config_rules_out():
    from gradleak.integrations.flower import AuditStrategy

    audit = AuditStrategy(fedavg3(), model=small_mlp(), shape=SHAPE, attack="ig")
    grid = Grid()
    adam = ConfigRecord({"lr": 1e-3, "optimizer": "adam"})
    with pytest.raises(NotApplicableError, match="train with adam"):
        audit.start(grid=grid, initial_arrays=ArrayRecord(small_mlp().state_dict()), num_rounds=1, train_config=adam)
    with pytest.raises(ConfigError, match="initial_arrays do not fit"):
        audit.start(grid=grid, initial_arrays=ArrayRecord(small_mlp(widths=(8,)).state_dict()), num_rounds=1)
    assert grid.sent == 0  # refused before any message was sent


@needs_flwr
def test_local_training_comes_from_the_train_config_fedprox_and_momentum():
    from gradleak.integrations.flower import AuditStrategy

    attack = Recorder()
    audit = AuditStrategy(fedavg3(), model=small_mlp(), shape=SHAPE, attack=attack, wait=True)
    _round(audit, {"lr": 0.1, "local-epochs": 2, "batch-size": 1, "momentum": 0.9, "weight-decay": 1e-3,
                   "proximal-mu": 0.01})
    audit.close()
    assert attack.updates[0].local_training == LocalTraining(0.1, 2, 1, momentum=0.9, weight_decay=1e-3,
                                                             prox_mu=0.01)


@needs_flwr
def test_a_round_is_attacked_in_one_batched_pass_on_the_given_device(caplog):
    from gradleak.core.registry import create_attack
    from gradleak.integrations.flower import AuditStrategy

    audit = AuditStrategy(fedavg3(), model=small_mlp(), shape=SHAPE, attack=create_attack("ig", steps=3), wait=True,
                          device="cpu")
    with caplog.at_level(logging.INFO, logger="flwr.gradleak"):
        _round(audit, {"lr": 0.1})
    audit.close()
    assert "round 1: 3 update(s) queued for ig as one batched pass (run_many)" in caplog.text
    records = audit.store.records
    assert len(records) == 3 and all(r.status == "ok" for r in records), [r.summary() for r in records]
    assert [r.reconstruction.info["batched"] for r in records] == [3, 3, 3]
    assert {r.config["device"] for r in records} == {"cpu"}
    assert all(r.reconstruction.inputs.device.type == "cpu" for r in records)


@needs_flwr
def test_progress_lines_and_a_per_client_report_scored_with_truth_from_the_replies(tmp_path, caplog):
    from gradleak.integrations.flower import AuditStrategy

    audit = AuditStrategy(fedavg3(), model=small_mlp(), shape=SHAPE, attack=Recorder(), store=tmp_path / "audit",
                          collect_truth=True, wait=True)
    with caplog.at_level(logging.INFO, logger="flwr.gradleak"):
        for r in (1, 2):
            _round(audit, {"lr": 0.1}, share=True, server_round=r)
        assert (tmp_path / "audit" / "report.md").exists()  # written after every round, before the end
        audit.close()
    rows = audit.records
    assert len(rows) == 6 and all(r["status"] == "ok" and r["metrics"] is not None for r in rows)
    assert sorted({r["partition_id"] for r in rows}) == [0, 1, 2]
    assert "round 2 done: 3/3 attacked | PSNR so far: best" in caplog.text and "median" in caplog.text
    assert "round 1, partition 0 (node" in caplog.text
    report = (tmp_path / "audit" / "report.md").read_text()
    assert "## Per client, across rounds" in report and "| partition 0 |" in report and '"finished"' in report
    assert "<html" in (tmp_path / "audit" / "report.html").read_text()


@needs_flwr
def test_truth_is_not_sent_unless_the_client_allows_it_and_not_used_unless_the_server_asks(caplog):
    from gradleak.integrations.flower import AuditStrategy
    from gradleak.integrations.flower.clientinfo import RECORD

    audit = AuditStrategy(fedavg3(), model=small_mlp(), shape=SHAPE, attack=Recorder(), wait=True)
    replies, _, _ = _round(audit, {"lr": 0.1})  # the default: clients keep their data
    assert all(set(r.content.config_records[RECORD]) == {"partition-id"} for r in replies)
    with caplog.at_level(logging.WARNING, logger="flwr.gradleak"):
        _round(audit, {"lr": 0.1}, share=True, server_round=2)  # sent, but the server did not ask
    audit.close()
    assert all(r["metrics"] is None for r in audit.records)
    assert "sends its training data" in caplog.text


# ---------------------------------------------------------------- in Flower's simulation engine
BUDGET = 3.0
_RELEASE = threading.Event()


class _Slow(Recorder):
    """An attack far slower than any budget: it returns only when the test ends (or after 10 minutes)."""

    name = "slow"

    def run(self, model, update, *, shape):
        _RELEASE.wait(600)
        return super().run(model, update, shape=shape)


def _simulate(tmp_path):
    """One simulation, two audited runs: (A) training waits, a round budget; (B) stopped in round 2."""
    from flwr.app import Context  # noqa: F401  (Flower's types for the apps below)
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation
    from flwr.supercore.run import RunNotRunningException

    from gradleak.fl.client import local_sgd
    from gradleak.integrations.flower import AuditStrategy, annotate_reply
    from gradleak.integrations.flower.replies import local_training_from_config

    client_app, server_app, sink = ClientApp(), ServerApp(), {}

    @client_app.train()
    def train(msg, context):
        torch.set_num_threads(1)
        part = int(context.node_config["partition-id"])
        model = small_mlp()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(part))
        local_sgd(model, x, torch.tensor([part, part + 3]), local_training_from_config(dict(msg.content["config"])))
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord({"num-examples": 2})})
        return Message(annotate_reply(content, context), reply_to=msg)

    class StoppingGrid:
        """Flower's grid, except that the run is stopped (``flwr stop``) at the second train round."""

        def __init__(self, grid):
            self.grid, self.trains = grid, 0

        def send_and_receive(self, messages, timeout=None):
            messages = list(messages)
            self.trains += bool(messages)
            if self.trains == 2:
                raise RunNotRunningException
            return self.grid.send_and_receive(messages, timeout=timeout)

        def __getattr__(self, name):
            return getattr(self.grid, name)

    @server_app.main()
    def main(grid, context):
        slow = {"attack": _Slow(), "workers": 1, "attack_seconds": None}
        config = ConfigRecord({"lr": 0.1, "momentum": 0.9})

        def fedavg():
            return FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)

        try:
            a = AuditStrategy(fedavg(), model=small_mlp(), shape=SHAPE, wait=True, round_seconds=BUDGET,
                              store=tmp_path / "a", **slow)
            b = AuditStrategy(fedavg(), model=small_mlp(), shape=SHAPE, store=tmp_path / "b", **slow)
            a.start(grid=grid, initial_arrays=ArrayRecord(small_mlp().state_dict()), num_rounds=2, train_config=config)
            sink["a"] = (a.audit_wait, a.records)
            try:
                b.start(grid=StoppingGrid(grid), initial_arrays=ArrayRecord(small_mlp().state_dict()), num_rounds=3,
                        train_config=config)
            except RunNotRunningException:
                sink["stopped"] = True
            sink["b"] = b.records
        except BaseException as err:  # surfaced by the test, not lost in Flower's log
            sink["error"] = repr(err)

    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=2,  # one Ray actor: a quicker start
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 1}})
    return sink


@needs_flwr
@pytest.mark.slow
def test_simulation_slow_attack_keeps_rounds_in_budget_and_a_stopped_run_leaves_a_complete_report(tmp_path):
    try:
        sink = _simulate(tmp_path)
    finally:
        _RELEASE.set()  # the abandoned attack threads may end now
    assert "error" not in sink, sink.get("error")
    # (A) training waited on the audit, but never longer than the round budget (plus the dispatcher's
    # tick), although each attack alone would have run for minutes.
    waits, rows = sink["a"]
    assert sorted(waits) == [1, 2] and all(w < BUDGET + 5.0 for w in waits.values()), waits
    statuses = {n: sorted(r["status"] for r in rows if r["round"] == n) for n in (1, 2)}
    # round 1: one attack ran into the budget, the other never got the one worker; round 2: the worker's
    # thread still runs round 1's attack (threads cannot be killed), so both are cancelled
    assert statuses == {1: ["cancelled", "timeout"], 2: ["cancelled", "cancelled"]}, rows
    assert all(f"round's audit budget ({BUDGET:g} s)" in r["reason"] for r in rows), rows
    assert any("threads cannot be killed" in r["reason"] for r in rows if r["round"] == 2)  # the slot stays taken
    assert "audit_wait_seconds" in (tmp_path / "a" / "report.md").read_text()
    # (B) stopped in round 2 while round 1's attacks ran or waited: both are recorded, the report is complete
    # (test_flwr_stop_while_attacks_run_... shows the same without Ray, deterministically).
    assert sink["stopped"]
    rows = sink["b"]
    assert [(r["round"], r["status"]) for r in rows] == [(1, "cancelled"), (1, "cancelled")], rows
    assert all(r["reason"].startswith("the run stopped") for r in rows)  # before it started, or while it ran
    assert {r["partition_id"] for r in rows} == {0, 1}
    report = (tmp_path / "b" / "report.md").read_text()
    assert "2 client updates seen: 0 attacked, 0 failed, 0 over budget, 2 cancelled" in report
    assert "stopped (RunNotRunningException)" in report and "| partition 1 |" in report
    assert (tmp_path / "b" / "report.html").exists()


class _ClientGrid(Grid):
    """A grid whose clients train for real; at train round ``stop_at`` Flower's exit path runs (``flwr stop``)."""

    def __init__(self, stop_at=None, before_stop=None):
        super().__init__()
        self.stop_at, self.trains, self.before_stop = stop_at, 0, before_stop

    def send_and_receive(self, messages, timeout=None):
        from gradleak.fl.client import local_sgd
        from gradleak.integrations.flower import annotate_reply
        from gradleak.integrations.flower.replies import local_training_from_config

        messages = list(messages)
        if not messages:
            return []
        self.trains += 1
        if self.trains == self.stop_at:  # what flwr_exit does on SIGINT: exit handlers, then SystemExit
            from flwr.supercore.exit.exit_handler import trigger_exit_handlers

            if self.before_stop is not None:
                self.before_stop()

            trigger_exit_handlers(run_before_force_exit=True)
            raise SystemExit(0)
        replies = []
        for msg in messages:
            part = [11, 22, 33].index(msg.metadata.dst_node_id)
            client = small_mlp()
            client.load_state_dict(msg.content["arrays"].to_torch_state_dict())
            x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(part))
            local = local_training_from_config(dict(msg.content["config"]))
            local_sgd(client, x, torch.tensor([part, part + 1]), local)
            content = RecordDict({"arrays": ArrayRecord(client.state_dict()),
                                  "metrics": MetricRecord({"num-examples": 2})})

            class Ctx:
                node_config = {"partition-id": part}

            replies.append(Message(annotate_reply(content, Ctx()), reply_to=msg))
        return replies


@needs_flwr
def test_flwr_stop_while_attacks_run_cancels_them_and_still_writes_the_report(tmp_path):
    from gradleak.integrations.flower import AuditStrategy

    started, release = threading.Event(), threading.Event()

    class Stuck(Recorder):
        def run(self, model, update, *, shape):
            started.set()
            release.wait(60)
            return super().run(model, update, shape=shape)

    audit = AuditStrategy(fedavg3(), model=small_mlp(), shape=SHAPE, attack=Stuck(), store=tmp_path / "audit")
    with pytest.raises(SystemExit):
        grid = _ClientGrid(stop_at=2, before_stop=lambda: started.wait(30))  # stop once an attack runs
        audit.start(grid=grid, initial_arrays=ArrayRecord(small_mlp().state_dict()), num_rounds=3,
                    train_config=ConfigRecord({"lr": 0.1}))
    release.set()
    rows = sorted(audit.records, key=lambda r: r["partition_id"])
    assert started.is_set() and [(r["round"], r["status"]) for r in rows] == [(1, "cancelled")] * 3
    assert sum("while this attack ran" in r["reason"] for r in rows) == 1  # one worker: one ran, two waited
    report = (tmp_path / "audit" / "report.md").read_text()
    assert "stopped (Flower is shutting the ServerApp down)" in report
    assert "3 client updates seen: 0 attacked, 0 failed, 0 over budget, 3 cancelled, 0 skipped." in report
    assert [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| partition")] == \
        ["partition 0", "partition 1", "partition 2"]


@needs_flwr
def test_an_aggregation_error_still_leaves_every_update_recorded(tmp_path):
    from flwr.serverapp.exception import AggregationError

    from gradleak.integrations.flower import AuditStrategy

    class Failing(FedAvg):
        def aggregate_train(self, server_round, replies):
            raise AggregationError("the inner strategy gave up")

    audit = AuditStrategy(Failing(min_train_nodes=3, min_available_nodes=3), model=small_mlp(), shape=SHAPE,
                          attack=Recorder(), store=tmp_path / "audit")
    with pytest.raises(AggregationError):
        audit.start(grid=_ClientGrid(), initial_arrays=ArrayRecord(small_mlp().state_dict()), num_rounds=2,
                    train_config=ConfigRecord({"lr": 0.1}))
    assert len(audit.records) == 3 and {r["status"] for r in audit.records} <= {"ok", "cancelled"}
    assert "stopped (AggregationError: the inner strategy gave up)" in (tmp_path / "audit" / "report.md").read_text()
