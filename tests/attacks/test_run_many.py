"""``Attack.run_many``: N clients' updates in one batched pass equal N separate runs with the same seed."""

from __future__ import annotations

import pytest
import torch

from gradleak.attacks.batched import attack_each
from gradleak.core.errors import ConfigError, NotApplicableError, UpdateMismatchError
from gradleak.core.registry import ATTACKS, create_attack
from gradleak.core.types import LocalTraining
from gradleak.data import sample_batch
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.generative.dcgan import ConditionalDCGAN
from gradleak.models import build_model

DIGITS = (1, 8, 8)
MNIST = (1, 28, 28)
BATCHED = {"dlg", "idlg", "ig", "geng", "gradinversion", "fedavg-unrolled", "ggl", "gifd"}


def _updates(data, model, b, n=3, *, fedavg=False, local=None):
    out = []
    for c in range(n):
        truth = sample_batch(data, b, seed=40 + c, label_mode="distinct")
        if fedavg or local is not None:
            out.append(fedavg_update(model, truth.inputs, truth.labels, local or LocalTraining(lr=0.1, batch_size=1),
                                     labels_leak=True))
        else:
            out.append(fedsgd_update(model, truth.inputs, truth.labels, labels_leak=True))
    return out


def _cases(digits, mnist):
    convnet = build_model("convnet", shape=DIGITS, num_classes=10, seed=1)
    lenet = build_model("lenet", shape=DIGITS, num_classes=10, seed=1)
    lenet28 = build_model("lenet", shape=MNIST, num_classes=10, seed=1)
    torch.manual_seed(0)
    small_gen = ConditionalDCGAN(width=4).eval()
    conv28 = build_model("convnet", shape=MNIST, num_classes=10, seed=1, width=4)
    return {
        "ig": (create_attack("ig", steps=6, restarts=2), convnet, _updates(digits, convnet, 2), DIGITS),
        "geng": (create_attack("geng", steps=5, labels="known"), convnet, _updates(digits, convnet, 3), DIGITS),
        "gradinversion": (create_attack("gradinversion", steps=5, seeds=2, labels="known", group_start=0.0,
                                        group_every=2), convnet, _updates(digits, convnet, 2), DIGITS),
        "fedavg-unrolled": (create_attack("fedavg-unrolled", steps=4, restarts=2, labels="known"), convnet,
                            _updates(digits, convnet, 2, fedavg=True), DIGITS),
        "dlg": (create_attack("dlg", steps=3, max_iter=4, restarts=2), lenet, _updates(digits, lenet, 1), DIGITS),
        "idlg": (create_attack("idlg", steps=3, max_iter=4, labels="known"), lenet, _updates(digits, lenet, 1),
                 DIGITS),
        "ggl": (create_attack("ggl", optimizer="adam", steps=3, restarts=2), lenet28, _updates(mnist, lenet28, 1),
                MNIST),
        "gifd": (create_attack("gifd", generator=small_gen, steps=2, restarts=2, map_steps=1), conv28,
                 _updates(mnist, conv28, 1), MNIST),
    }


def test_the_batching_attacks_are_the_gradient_matching_ones():
    assert {name for name in ATTACKS.names() if ATTACKS.get(name).batches_clients} == BATCHED
    assert not create_attack("ggl", optimizer="cma").batches() and create_attack("ggl", optimizer="adam").batches()


@pytest.mark.parametrize("name", sorted(BATCHED))
def test_run_many_equals_separate_runs(name, digits, mnist):
    attack, model, updates, shape = _cases(digits, mnist)[name]
    many = attack.run_many(model, updates, shape=shape, device="cpu")
    assert len(many) == len(updates)
    for update, rec in zip(updates, many):
        alone = attack.run(model, update, shape=shape, device="cpu")
        assert rec.info["batched"] == len(updates) and "batched" not in alone.info
        assert rec.inputs.shape == alone.inputs.shape and rec.inputs.device.type == "cpu"
        assert torch.equal(rec.labels, alone.labels), name
        gap = float((rec.inputs - alone.inputs).abs().max())
        assert gap < 1e-4, (name, gap)
        assert rec.loss_history == pytest.approx(alone.loss_history, rel=1e-3, abs=1e-6), name
        assert rec.info["final_loss"] == pytest.approx(alone.info["final_loss"], rel=1e-3, abs=1e-6)
    # the clients really are different problems: their reconstructions differ
    assert float((many[0].inputs - many[1].inputs).abs().max()) > 1e-3


@pytest.mark.parametrize("local", [LocalTraining(lr=0.05, batch_size=1, momentum=0.9, prox_mu=0.01),
                                   LocalTraining(lr=0.01, batch_size=1, optimizer="adam")])
def test_fedavg_unrolled_run_many_equals_separate_runs_for_other_client_optimisers(local, digits):
    model = build_model("convnet", shape=DIGITS, num_classes=10, seed=1)
    attack = create_attack("fedavg-unrolled", steps=3, labels="known")
    updates = _updates(digits, model, 2, local=local)
    many = attack.run_many(model, updates, shape=DIGITS, device="cpu")
    for update, rec in zip(updates, many):
        alone = attack.run(model, update, shape=DIGITS, device="cpu")
        assert rec.info["batched"] == len(updates)
        assert float((rec.inputs - alone.inputs).abs().max()) < 1e-4


def test_run_many_groups_batch_sizes_and_keeps_order(digits):
    model = build_model("convnet", shape=DIGITS, num_classes=10, seed=2)
    updates = [*_updates(digits, model, 2, n=2), *_updates(digits, model, 1, n=1)]
    updates = [updates[0], updates[2], updates[1]]  # b=2, b=1, b=2
    attack = create_attack("ig", steps=4)
    many = attack.run_many(model, updates, shape=DIGITS)
    assert [r.inputs.shape[0] for r in many] == [2, 1, 2]
    assert [r.info.get("batched") for r in many] == [2, None, 2]
    for update, rec in zip(updates, many):
        assert torch.allclose(rec.inputs, attack.run(model, update, shape=DIGITS).inputs, atol=1e-4)


def test_run_many_names_the_update_at_fault(digits):
    model = build_model("convnet", shape=DIGITS, num_classes=10, seed=2)
    other = build_model("mlp", shape=DIGITS, num_classes=10, seed=2)
    good = _updates(digits, model, 1, n=1)[0]
    wrong = _updates(digits, other, 1, n=1)[0]
    with pytest.raises(UpdateMismatchError, match=r"\(update 1\)"):
        create_attack("ig", steps=2).run_many(model, [good, wrong], shape=DIGITS)
    with pytest.raises(NotApplicableError, match=r"update 0"):
        create_attack("fedavg-unrolled", steps=2).run_many(model, [good, good], shape=DIGITS)


def test_run_many_refuses_one_update_in_place_of_a_list_but_takes_any_iterable(digits):
    model = build_model("convnet", shape=DIGITS, num_classes=10, seed=2)
    good = _updates(digits, model, 1, n=1)[0]
    attack = create_attack("ig", steps=2)
    with pytest.raises(ConfigError, match=r"list of ClientUpdate, got ClientUpdate; for one update call run"):
        attack.run_many(model, good, shape=DIGITS)
    with pytest.raises(ConfigError, match=r"list of ClientUpdate, got dict"):  # not its keys, one by one
        attack.run_many(model, {"client-1": good}, shape=DIGITS)
    assert len(attack.run_many(model, (u for u in [good, good]), shape=DIGITS)) == 2


def test_attack_each_batches_per_model_and_isolates_failures(digits):
    a = build_model("convnet", shape=DIGITS, num_classes=10, seed=3)
    b = build_model("convnet", shape=DIGITS, num_classes=10, seed=4)
    wrong = build_model("mlp", shape=DIGITS, num_classes=10, seed=3)
    ua, ub = _updates(digits, a, 1, n=2), _updates(digits, b, 1, n=1)
    bad = _updates(digits, wrong, 1, n=1)[0]
    pairs = [(a, ua[0]), (b, ub[0]), (a, bad), (a, ua[1]), (ValueError("no model"), ua[0])]
    out = attack_each(create_attack("ig", steps=3), pairs, shape=DIGITS)
    assert [type(o).__name__ for o in out] == ["Reconstruction", "Reconstruction", "UpdateMismatchError",
                                                "Reconstruction", "ValueError"]
    assert out[0].info["batched"] == 2 and out[3].info["batched"] == 2 and "batched" not in out[1].info
