"""Flower integration (issues 10, 18): AuditStrategy, the defense mod, the audited demo app."""

from __future__ import annotations

import logging
import os
import sys

import pytest
import torch

from gradleak.core.errors import ConfigError, MissingDependencyError
from gradleak.core.types import LocalTraining, Reconstruction
from gradleak.integrations.flower.strategy import local_training_from_config, require_flwr

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
try:
    import flwr  # noqa: F401
    from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg

    HAVE_FLWR = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_FLWR = False

needs_flwr = pytest.mark.skipif(not HAVE_FLWR, reason="flwr not installed: pip install 'gradleak[flower]'")
SHAPE = (1, 8, 8)


def test_missing_flwr_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flwr", None)
    with pytest.raises(MissingDependencyError, match=r"gradleak\[flower\]") as info:
        require_flwr()
    assert info.value.extra == "flower" and info.value.package == "flwr"


def test_local_training_from_config():
    assert local_training_from_config({"lr": 0.5, "local-epochs": 2, "batch-size": 4}) == LocalTraining(0.5, 2, 4)
    assert local_training_from_config({"lr": 0.1, "batch-size": 0, "local-steps": 3}).steps == 3
    assert local_training_from_config({}, fallback=LocalTraining(0.2)).lr == 0.2
    with pytest.raises(ConfigError, match="learning rate"):
        local_training_from_config({"local-epochs": 1})


# ---------------------------------------------------------------- mocked replies, no simulation
class _Grid:
    def get_node_ids(self):
        return [11, 22, 33]


class _Spy:
    """An inner strategy that records exactly what it was given."""

    weighted_by_key = "num-examples"

    def __init__(self):
        self.inner, self.seen = FedAvg(min_train_nodes=3, min_available_nodes=3), None

    def configure_train(self, *args):
        return self.inner.configure_train(*args)

    def aggregate_train(self, server_round, replies):
        self.seen = replies
        return "aggregate", None


class _ZeroAttack:
    """A stand-in attack (the unit tests check the plumbing, not an attack)."""

    name = "zero"

    def __init__(self, fail=False):
        self.fail, self.updates = fail, []

    def run(self, model, update, *, shape):
        if self.fail:
            raise RuntimeError("boom")
        update.validate(model)
        self.updates.append(update)
        return Reconstruction(torch.zeros(update.num_examples, *shape), None, seconds=0.0)


@pytest.fixture(autouse=True)
def _task_identity():
    """Messages built outside a running app need a task identity (run_simulation sets one too)."""
    if HAVE_FLWR:
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


def _model():
    from gradleak.models import build_model

    return build_model("mlp", shape=SHAPE, num_classes=10, seed=0, widths=(16,))


def _round(strategy, model, make_reply):
    """configure_train → client replies (real local SGD, or ``make_reply``) → aggregate_train."""
    from gradleak.fl.client import local_sgd

    config = ConfigRecord({"lr": 0.1, "local-epochs": 1, "batch-size": 0})
    messages = list(strategy.configure_train(1, ArrayRecord(model.state_dict()), config, _Grid()))
    replies = []
    for i, msg in enumerate(sorted(messages, key=lambda m: m.metadata.dst_node_id)):
        client = _model()
        client.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(i))
        local_sgd(client, x, torch.tensor([i, i + 1]), LocalTraining(0.1))
        good = RecordDict({"arrays": ArrayRecord(client.state_dict()),
                           "metrics": MetricRecord({"num-examples": 2})})
        replies.append(make_reply(i, msg, good))
    return replies, strategy.aggregate_train(1, replies)


def _good(i, msg, content):
    return Message(content, reply_to=msg)


def _assert_plain_fedavg(arrays, replies):
    """``arrays`` is bit for bit what plain FedAvg aggregates from the same replies."""
    expected, _ = FedAvg(min_train_nodes=3, min_available_nodes=3).aggregate_train(1, replies)
    assert set(arrays) == set(expected)
    for key in expected:
        assert (arrays[key].numpy() == expected[key].numpy()).all(), key


def _malformed(kind):
    def make(i, msg, content):
        if i != 1:
            return Message(content, reply_to=msg)
        if kind == "error":
            return Message(Error(code=2, reason="client crashed"), reply_to=msg)
        if kind == "missing arrays":
            return Message(RecordDict({"metrics": MetricRecord({"num-examples": 2})}), reply_to=msg)
        if kind == "no num-examples":
            return Message(RecordDict({"arrays": content["arrays"], "metrics": MetricRecord({"loss": 1.0})}),
                           reply_to=msg)
        arrays = {k: Array(v.numpy()) for k, v in content["arrays"].items()}
        arrays["2.weight"] = Array(torch.zeros(16, 63).numpy())  # wrong shape
        return Message(RecordDict({"arrays": ArrayRecord(arrays), "metrics": content["metrics"]}),
                       reply_to=msg)
    return make


@needs_flwr
@pytest.mark.parametrize("kind, reason", [("error", "replied with an error"),
                                          ("missing arrays", "0 ArrayRecords"),
                                          ("no num-examples", "num-examples"),
                                          ("wrong shape", "shapes do not fit")])
def test_malformed_reply_is_skipped_and_passed_on_untouched(kind, reason, caplog):
    from gradleak.integrations.flower.strategy import AuditStrategy

    spy, attack = _Spy(), _ZeroAttack()
    audit = AuditStrategy(spy, model=_model(), shape=SHAPE, attack=attack, wait=True)
    with caplog.at_level(logging.WARNING, logger="flwr.gradleak"):
        replies, result = _round(audit, _model(), _malformed(kind))
    assert result == ("aggregate", None)
    assert len(spy.seen) == 3 and all(a is b for a, b in zip(spy.seen, replies, strict=True))
    status = sorted((r["status"], r["reason"]) for r in audit.records)
    assert [s for s, _ in status] == ["ok", "ok", "skipped"]
    assert reason in status[-1][1] and reason in caplog.text
    assert len(attack.updates) == 2


@needs_flwr
def test_error_reply_leaves_fedavg_aggregate_bit_identical():
    from gradleak.integrations.flower.strategy import AuditStrategy

    plain = FedAvg(min_train_nodes=3, min_available_nodes=3)
    audit = AuditStrategy(FedAvg(min_train_nodes=3, min_available_nodes=3), model=_model(), shape=SHAPE,
                          attack=_ZeroAttack(), wait=True)
    replies, (audited, _) = _round(audit, _model(), _malformed("error"))
    expected, _ = plain.aggregate_train(1, replies)
    assert set(audited) == set(expected)
    for key in expected:
        assert (audited[key].numpy() == expected[key].numpy()).all()
    assert [r["status"] for r in audit.records].count("skipped") == 1


@needs_flwr
def test_update_carries_the_delta_and_the_servers_local_training():
    from gradleak.integrations.flower.strategy import AuditStrategy

    model, attack = _model(), _ZeroAttack()
    audit = AuditStrategy(FedAvg(min_train_nodes=3, min_available_nodes=3), model=model, shape=SHAPE,
                          attack=attack, wait=True)
    replies, _ = _round(audit, model, _good)
    update = attack.updates[0]
    after = replies[0].content["arrays"].to_torch_state_dict()
    assert update.kind == "weight_delta" and update.num_examples == 2
    assert update.local_training == LocalTraining(0.1, 1, None, None)
    torch.testing.assert_close(update.tensors["2.weight"], after["2.weight"] - model.state_dict()["2.weight"])


@needs_flwr
def test_failing_attack_never_breaks_training(caplog):
    from gradleak.integrations.flower.strategy import AuditStrategy

    audit = AuditStrategy(FedAvg(min_train_nodes=3, min_available_nodes=3), model=_model(), shape=SHAPE,
                          attack=_ZeroAttack(fail=True))  # the default: training never waits
    with caplog.at_level(logging.WARNING, logger="flwr.gradleak"):
        replies, (arrays, _) = _round(audit, _model(), _good)
        audit.close()
    assert arrays is not None
    _assert_plain_fedavg(arrays, replies)  # training goes on exactly as without the audit
    assert [r["status"] for r in audit.records] == ["failed"] * 3
    assert all("boom" in r["reason"] for r in audit.records) and "boom" in caplog.text


@needs_flwr
def test_positional_keys_and_folder_store(tmp_path):
    from gradleak.integrations.flower.strategy import AuditStrategy

    model, attack = _model(), _ZeroAttack()
    audit = AuditStrategy(FedAvg(min_train_nodes=3, min_available_nodes=3), model=model, shape=SHAPE,
                          attack=attack, store=tmp_path / "audit", clients=2, wait=True)

    def numbered(i, msg, content):  # a client that sends its arrays keyed "0", "1", ...
        arrays = ArrayRecord.from_numpy_ndarrays(content["arrays"].to_numpy_ndarrays())
        return Message(RecordDict({"arrays": arrays, "metrics": content["metrics"]}), reply_to=msg)

    _round(audit, model, numbered)
    assert [r["status"] for r in audit.records] == ["ok", "ok"]
    assert (tmp_path / "audit" / "index.json").exists()
    assert all((tmp_path / "audit" / f"round-001/node-{r['node_id']}/reconstruction.png").exists()
               for r in audit.records)


@needs_flwr
def test_unaudited_round_is_only_aggregated():
    from gradleak.integrations.flower.strategy import AuditStrategy

    attack = _ZeroAttack()
    audit = AuditStrategy(FedAvg(min_train_nodes=3, min_available_nodes=3), model=_model(), shape=SHAPE,
                          attack=attack, rounds={2})
    replies, (arrays, _) = _round(audit, _model(), _good)
    assert arrays is not None and audit.records == [] and attack.updates == []
    _assert_plain_fedavg(arrays, replies)


@needs_flwr
def test_sqlite_store_writes_sweep_rows(tmp_path):
    from gradleak.integrations.flower.strategy import AuditStrategy
    from gradleak.sweep.store import Store

    db = tmp_path / "audit.sqlite"
    audit = AuditStrategy(FedAvg(min_train_nodes=3, min_available_nodes=3), model=_model(), shape=SHAPE,
                          attack=_ZeroAttack(), store=db, run_info={"dataset": "random"})
    _round(audit, _model(), _malformed("error"))
    audit.close()
    with Store(db, readonly=True) as store:
        rows = sorted(store.runs(), key=lambda r: r["status"])
    assert [r["status"] for r in rows] == ["done", "done", "failed"]
    assert rows[0]["config"]["round"] == 1 and rows[0]["config"]["dataset"] == "random"
    assert "error" in rows[2]["error"]


@needs_flwr
def test_defense_mod_defends_the_delta_and_fails_closed():
    from gradleak.integrations.flower.mods import defense_mod

    model = _model()
    sent = ArrayRecord(model.state_dict())
    msg = Message(RecordDict({"arrays": sent, "config": ConfigRecord({"lr": 0.1, "server-round": 1})}),
                  dst_node_id=5, message_type="train")

    class Ctx:
        node_id, node_config = 5, {"partition-id": 0}

    def train(message, context):
        trained = {k: v + 1.0 for k, v in message.content["arrays"].to_torch_state_dict().items()}
        return Message(RecordDict({"arrays": ArrayRecord(trained), "metrics": MetricRecord({"num-examples": 2})}),
                       reply_to=message)

    def halve(update, *, model=None):
        return update.with_tensors({k: v / 2 for k, v in update.tensors.items()}, "halve")

    reply = defense_mod([halve])(msg, Ctx(), train)
    before, after = model.state_dict(), reply.content["arrays"].to_torch_state_dict()
    torch.testing.assert_close(after["2.weight"] - before["2.weight"], torch.full((16, 64), 0.5))
    bad = defense_mod([halve])(msg, Ctx(), lambda m, c: Message(RecordDict(), reply_to=m))
    assert bad.has_error() and "0 ArrayRecords" in bad.error.reason
    from gradleak.core.registry import list_defenses

    if "mixup" in list_defenses():  # a training defense belongs in the training loop, not a mod
        with pytest.raises(ConfigError, match="training loop"):
            defense_mod(["mixup"])
    if "clip" in list_defenses():
        clipped = defense_mod(["clip:norm=1.0"])(msg, Ctx(), train).content["arrays"].to_torch_state_dict()
        delta = torch.cat([(clipped[k] - before[k]).flatten() for k in before])
        assert delta.norm().item() == pytest.approx(1.0, rel=1e-4)


# ---------------------------------------------------------------- the example, in Flower's simulation
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One simulation (start-up dominates): plain FedAvg, then the same federation audited."""
    if not HAVE_FLWR:
        pytest.skip("flwr not installed: pip install 'gradleak[flower]'")
    from gradleak.core.registry import list_attacks
    from gradleak.integrations.flower.demo import DemoConfig, run_demo

    attack = "spear" if "spear" in list_attacks() else "ig"
    options = {"max_seconds": 60} if attack == "spear" else {"steps": 10}
    cfg = DemoConfig(rounds=3, clients=3, examples_per_client=8, attack=attack, attack_options=options,
                     compare_plain=True, seed=3)
    out = tmp_path_factory.mktemp("flower") / "demo"
    return attack, run_demo(cfg, out), out


@needs_flwr
@pytest.mark.slow
def test_demo_audit_does_not_change_the_global_model(demo_run):
    _, summary, _ = demo_run
    from gradleak.integrations.flower.democonfig import DemoConfig, new_model

    audited, plain = summary["final"], summary["final_plain"]
    initial = new_model(DemoConfig(seed=3)).state_dict()
    assert set(audited) == set(plain) == set(initial)
    assert any(not torch.equal(audited[k], initial[k]) for k in initial)  # it did train
    for key, value in audited.items():
        torch.testing.assert_close(value, plain[key], rtol=0, atol=1e-6)
    assert summary["max_abs_diff_vs_plain"] <= 1e-6


@needs_flwr
@pytest.mark.slow
def test_demo_every_update_of_every_round_has_a_stored_reconstruction(demo_run):
    _, summary, out = demo_run
    records = summary["records"]
    assert sorted({r["round"] for r in records}) == [1, 2, 3]
    assert len(records) == 9 and all(r["status"] == "ok" and r["has_reconstruction"] for r in records)
    assert all(r["metrics"] is not None for r in records)  # the truth hook scored every one
    for r in records:
        assert (out / "audit" / f"round-{r['round']:03d}" / f"node-{r['node_id']}" / "reconstruction.png").exists()
    assert (out / "audit" / "report.md").exists() and (out / "final_model.safetensors").exists()


@needs_flwr
@pytest.mark.slow
def test_demo_spear_round_one_is_exact(demo_run):
    attack, summary, _ = demo_run
    if attack != "spear":
        pytest.skip("the 'spear' attack is not registered in this build")
    first = [r for r in summary["records"] if r["round"] == 1]
    assert len(first) == 3
    assert all(r["metrics"]["exact_fraction"] == 1.0 for r in first), first
