"""Fuzz the Python API with a seeded table of bad inputs: each must raise one typed ``GradleakError``.

Two tables: every typed option of every registered attack, defense, model and dataset given a
value of the wrong kind (derived from the signatures, so a new option is fuzzed the day it is
added), and hand-written calls covering updates, tensors, local training, the client, attacks,
metrics, scenarios, files and the Flower strategy. Any other exception (``TypeError``,
``RuntimeError``, ``AttributeError``, ...) or silent acceptance fails.
"""

from __future__ import annotations

import importlib.util
import math
import random
import typing

import torch

import gradleak as gl
from gradleak.core.errors import GradleakError
from gradleak.core.registry import ATTACKS, DATASETS, DEFENSES, MODELS
from gradleak.core.schema import describe, schema
from gradleak.core.types import ClientUpdate, GroundTruth, LocalTraining, Reconstruction

WRONG = {"an integer": [1.5, "3", True, float("nan"), [1]], "a finite number": ["x", float("nan"), float("inf"), True],
         "true or false": ["yes", 1, None], "text": [3, 1.5, ["a"]]}


def _option_cases() -> list[tuple[str, object]]:
    """(case name, a call) for every simple-typed option of every registered factory × wrong values."""
    cases = []
    for registry, extra in ((ATTACKS, {}), (DEFENSES, {}), (MODELS, {"shape": (1, 8, 8), "num_classes": 10}),
                            (DATASETS, {})):
        for name in registry.names():
            options, _ = schema(registry.get(name))
            for option in options.values():
                kind = describe(option.hint).removesuffix(" or none")
                if option.name in extra or kind not in WRONG:
                    continue
                for value in WRONG[kind]:
                    if value is None and typing.get_origin(option.hint) is not None:
                        continue
                    cases.append((f"{registry.kind} {name} {option.name}={value!r}",
                                  _creator(registry, name, {**extra, option.name: value})))
    return cases


def _creator(registry, name, options):
    return lambda: registry.create(name, **options)


def _update_parts():
    model = gl.build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    update = gl.fedsgd_update(model, torch.rand(2, 1, 8, 8), torch.tensor([1, 2]))
    return model, dict(update.tensors)


def _call_cases() -> list[tuple[str, object]]:
    model, grads = _update_parts()
    first = next(iter(grads))
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([1, 2])

    def edit(t):
        return {**grads, first: t}

    def attack(update, shape=(1, 8, 8), net=model):
        return gl.create_attack("ig", steps=1).run(net, update, shape=shape)

    good = ClientUpdate.from_gradients(grads, 2)
    rec = attack(good)
    cases = {
        "from_weights shape mismatch": lambda: ClientUpdate.from_weights({"w": torch.zeros(200, 64)},
                                                                         {"w": torch.zeros(1)}, 2, LocalTraining()),
        "from_weights name mismatch": lambda: ClientUpdate.from_weights({"w": torch.zeros(2)}, {"v": torch.zeros(2)},
                                                                        2, LocalTraining()),
        "from_weights no local training": lambda: ClientUpdate.from_weights({"w": torch.zeros(2)},
                                                                            {"w": torch.ones(2)}, 2, None),
        "from_weights local training a dict": lambda: ClientUpdate.from_weights(
            {"w": torch.zeros(2)}, {"w": torch.ones(2)}, 2, {"lr": 0.1}),
        "5 labels for 2 examples": lambda: ClientUpdate.from_gradients(grads, 2, labels=torch.arange(5)),
        "float labels": lambda: ClientUpdate.from_gradients(grads, 2, labels=torch.tensor([0.5, 1.0])),
        "2-D labels": lambda: ClientUpdate.from_gradients(grads, 2, labels=torch.zeros(2, 2, dtype=torch.long)),
        "negative label": lambda: ClientUpdate.from_gradients(grads, 2, labels=torch.tensor([-1, 2])),
        "labels a list": lambda: ClientUpdate.from_gradients(grads, 2, labels=[1, 2]),
        "bool tensor": lambda: ClientUpdate.from_gradients(edit(grads[first] > 0), 2),
        "int64 tensor": lambda: ClientUpdate.from_gradients(edit(grads[first].long()), 2),
        "complex tensor": lambda: ClientUpdate.from_gradients(edit(grads[first].cfloat()), 2),
        "numpy tensor": lambda: ClientUpdate.from_gradients(edit(grads[first].numpy()), 2),
        "list tensor": lambda: ClientUpdate.from_gradients(edit(grads[first].tolist()), 2),
        "tensors a list": lambda: ClientUpdate.from_gradients(list(grads.values()), 2),
        "no tensors": lambda: ClientUpdate.from_gradients({}, 2),
        "int key": lambda: ClientUpdate.from_gradients({1: torch.ones(2)}, 2),
        "values 1e38": lambda: attack(ClientUpdate.from_gradients(edit(grads[first] * 0 + 1e38), 2)),
        "NaN values": lambda: attack(ClientUpdate.from_gradients(edit(grads[first] * float("nan")), 2)),
        "all zero": lambda: attack(ClientUpdate.from_gradients({k: torch.zeros_like(v) for k, v in grads.items()}, 2)),
        "all equal": lambda: attack(ClientUpdate.from_gradients({k: torch.ones_like(v) for k, v in grads.items()}, 2)),
        "wrong shape tensor": lambda: attack(ClientUpdate.from_gradients(edit(torch.ones(3)), 2)),
        "num_examples 1.5": lambda: ClientUpdate.from_gradients(grads, 1.5),
        "num_examples nan": lambda: ClientUpdate.from_gradients(grads, float("nan")),
        "num_examples '3'": lambda: ClientUpdate.from_gradients(grads, "3"),
        "num_examples True": lambda: ClientUpdate.from_gradients(grads, True),
        "num_examples 0": lambda: ClientUpdate.from_gradients(grads, 0),
        "kind sideways": lambda: ClientUpdate("sideways", grads, 2),
        "defenses a string": lambda: ClientUpdate("gradients", grads, 2, defenses="noise"),
        "buffers a list": lambda: ClientUpdate("gradients", grads, 2, buffers=[1]),
        "LocalTraining epochs 1.5": lambda: LocalTraining(epochs=1.5),
        "LocalTraining epochs 10**6": lambda: LocalTraining(epochs=10**6),
        "LocalTraining lr '0.1'": lambda: LocalTraining(lr="0.1"),
        "LocalTraining lr nan": lambda: LocalTraining(lr=float("nan")),
        "LocalTraining lr True": lambda: LocalTraining(lr=True),
        "LocalTraining batch 0": lambda: LocalTraining(batch_size=0),
        "LocalTraining steps 2.5": lambda: LocalTraining(steps=2.5),
        "LocalTraining momentum -1": lambda: LocalTraining(momentum=-1),
        "LocalTraining momentum 1": lambda: LocalTraining(momentum=1.0),
        "LocalTraining momentum '0.9'": lambda: LocalTraining(momentum="0.9"),
        "LocalTraining momentum nan": lambda: LocalTraining(momentum=float("nan")),
        "LocalTraining optimizer rmsprop": lambda: LocalTraining(optimizer="rmsprop"),
        "LocalTraining optimizer None": lambda: LocalTraining(optimizer=None),
        "LocalTraining betas (2, 0)": lambda: LocalTraining(optimizer="adam", betas=(2, 0)),
        "LocalTraining betas 'ab'": lambda: LocalTraining(optimizer="adam", betas="ab"),
        "LocalTraining betas 3 values": lambda: LocalTraining(optimizer="adam", betas=(0.9, 0.9, 0.9)),
        "LocalTraining betas nan": lambda: LocalTraining(optimizer="adam", betas=(float("nan"), 0.9)),
        "LocalTraining nesterov 'yes'": lambda: LocalTraining(momentum=0.9, nesterov="yes"),
        "LocalTraining nesterov without momentum": lambda: LocalTraining(nesterov=True),
        "LocalTraining weight_decay -1": lambda: LocalTraining(weight_decay=-1.0),
        "LocalTraining weight_decay inf": lambda: LocalTraining(weight_decay=float("inf")),
        "LocalTraining prox_mu -0.1": lambda: LocalTraining(prox_mu=-0.1),
        "LocalTraining prox_mu '1'": lambda: LocalTraining(prox_mu="1"),
        "LocalTraining eps 0": lambda: LocalTraining(optimizer="adam", eps=0.0),
        "LocalTraining adam momentum": lambda: LocalTraining(optimizer="adam", momentum=0.9),
        "fedsgd all-zero update attacked": lambda: attack(
            ClientUpdate.from_gradients({k: torch.zeros_like(v) for k, v in grads.items()}, 2)),
        "GroundTruth 3-D inputs": lambda: GroundTruth(torch.rand(2, 8, 8), y),
        "GroundTruth label count": lambda: GroundTruth(x, torch.tensor([1])),
        "GroundTruth numpy": lambda: GroundTruth(x.numpy(), y),
        "fedsgd labels out of range": lambda: gl.fedsgd_update(model, x, torch.tensor([3, 99])),
        "fedsgd wrong input shape": lambda: gl.fedsgd_update(model, torch.rand(2, 3, 32, 32), y),
        "fedsgd numpy inputs": lambda: gl.fedsgd_update(model, x.numpy(), y),
        "fedsgd int inputs": lambda: gl.fedsgd_update(model, x.long(), y),
        "fedsgd NaN inputs": lambda: gl.fedsgd_update(model, x * float("nan"), y),
        "fedsgd label count": lambda: gl.fedsgd_update(model, x, torch.tensor([1])),
        "fedsgd model a string": lambda: gl.fedsgd_update("net", x, y),
        "fedsgd mode": lambda: gl.fedsgd_update(model, x, y, mode="sideways"),
        "fedavg local a dict": lambda: gl.fedavg_update(model, x, y, {"lr": 0.1}),
        "run wrong shape": lambda: attack(good, shape=(3, 32, 32)),
        "run shape 2-D": lambda: attack(good, shape=(8, 8)),
        "run shape negative": lambda: attack(good, shape=(1, -8, 8)),
        "run shape huge": lambda: attack(good, shape=(1, 100_000, 100_000)),
        "run update a dict": lambda: gl.create_attack("ig", steps=1).run(model, grads, shape=(1, 8, 8)),
        "run model a string": lambda: attack(good, net="net"),
        "evaluate wrong shapes": lambda: gl.evaluate(rec, GroundTruth(torch.rand(2, 1, 4, 4), y)),
        "evaluate wrong batch": lambda: gl.evaluate(rec, GroundTruth(torch.rand(3, 1, 8, 8), torch.tensor([1, 2, 3]))),
        "evaluate a dict": lambda: gl.evaluate({"inputs": x}, GroundTruth(x, y)),
        "evaluate 2-D labels": lambda: gl.evaluate(Reconstruction(x, torch.zeros(2, 2)), GroundTruth(x, y)),
        "create_attack steps 'abc'": lambda: gl.create_attack("ig", steps="abc"),
        "create_attack restarts 1e9": lambda: gl.create_attack("ig", restarts=1e9),
        "create_attack restarts 10**9": lambda: gl.create_attack("ig", restarts=10**9),
        "create_attack unknown option": lambda: gl.create_attack("ig", colour="red"),
        "create_attack unknown name": lambda: gl.create_attack("nope"),
        "create_attack seed 2**70": lambda: gl.create_attack("ig", seed=2**70),
        "create_defense sigma 'abc'": lambda: gl.create_defense("noise", sigma="abc"),
        "build_model width 0": lambda: gl.build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0, width=0),
        "build_model 1 TB": lambda: gl.build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0, width=10**5),
        "build_model shape 2-D": lambda: gl.build_model("convnet", shape=(8, 8), num_classes=10, seed=0),
        "build_model 1 class": lambda: gl.build_model("convnet", shape=(1, 8, 8), num_classes=1, seed=0),
        "build_model huge image": lambda: gl.build_model("lenet", shape=(1, 10**5, 10**5), num_classes=10, seed=0),
        "load_dataset data_dir for digits": lambda: gl.load_dataset("digits", data_dir="/tmp"),
        "load_dataset faces size 0": lambda: gl.load_dataset("faces", size=0),
        "sample_batch 0": lambda: gl.sample_batch(gl.load_dataset("digits"), 0, seed=0),
        "sample_batch 1.5": lambda: gl.sample_batch(gl.load_dataset("digits"), 1.5, seed=0),
        "sample_batch label mode": lambda: gl.sample_batch(gl.load_dataset("digits"), 1, seed=0, label_mode="x"),
    }
    return sorted(cases.items())


def _scenario_cases() -> list[tuple[str, object]]:
    from gradleak.experiment import Scenario, run_scenario
    from gradleak.experiment.scenario import scenario_from_dict
    from gradleak.sweep import parse_grid

    def run(**kw):
        return run_scenario(Scenario(attack="ig", dataset="digits", model="convnet", **kw))

    return [
        ("scenario seed -1", lambda: run(seed=-1)), ("scenario seed 2**63", lambda: run(seed=2**63)),
        ("scenario batch 1.5", lambda: run(batch_size=1.5)), ("scenario local_lr nan", lambda: run(local_lr=math.nan)),
        ("scenario local_epochs 1.5", lambda: run(local_epochs=1.5, protocol="fedavg")),
        ("scenario defenses a string", lambda: run(defenses="noise")),
        ("scenario attack options a list", lambda: run(attack_options=[1])),
        ("scenario model options width -4", lambda: run(model_options={"width": -4})),
        ("scenario adaptive 'yes'", lambda: run(adaptive="yes")),
        ("scenario model_state trained:10**9", lambda: run(model_state="trained:1000000000")),
        ("scenario attack 3", lambda: run_scenario(Scenario(attack=3))),
        ("scenario from dict unknown key", lambda: scenario_from_dict({"colour": "red"})),
        ("scenario from dict defenses a string", lambda: scenario_from_dict({"defenses": "noise"}).validate()),
        ("grid empty", lambda: parse_grid("")), ("grid depth", lambda: parse_grid("[base]\nx=" + "[" * 20 + "]" * 20)),
        ("grid nesting 5000", lambda: parse_grid("[base]\nx=" + "[" * 5000 + "]" * 5000)),
        ("grid not TOML", lambda: parse_grid("[base\n")),
    ]


def _flower_cases() -> list[tuple[str, object]]:
    if importlib.util.find_spec("flwr") is None:
        return []
    from gradleak.integrations.flower.strategy import AuditStrategy

    def audit(**kw):
        from flwr.serverapp.strategy import FedAvg

        args = {"model": gl.build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0), "shape": (1, 8, 8), **kw}
        return AuditStrategy(FedAvg(), **args)

    return [("AuditStrategy model 'net'", lambda: audit(model="net")),
            ("AuditStrategy shape 2-D", lambda: audit(shape=(8, 8))),
            ("AuditStrategy mode", lambda: audit(mode="sideways")),
            ("AuditStrategy seed -1", lambda: audit(seed=-1)),
            ("AuditStrategy local training a dict", lambda: audit(local_training={"lr": 0.1})),
            ("AuditStrategy attack options", lambda: audit(attack_options={"steps": "many"})),
            ("AuditStrategy workers 0", lambda: audit(workers=0)),
            ("AuditStrategy pool 'gpu'", lambda: audit(pool="gpu")),
            ("AuditStrategy attack_seconds -1", lambda: audit(attack_seconds=-1.0)),
            ("AuditStrategy round_seconds nan", lambda: audit(round_seconds=float("nan"))),
            ("DemoConfig workers 0", lambda: _demo(workers=0)),
            ("DemoConfig momentum 2", lambda: _demo(local_momentum=2.0)),
            ("DemoConfig optimizer rmsprop", lambda: _demo(local_optimizer="rmsprop")),
            ("DemoConfig rounds 1.5", lambda: _demo(rounds=1.5))]


def _demo(**kw):
    from gradleak.integrations.flower.democonfig import DemoConfig

    return DemoConfig(**kw)


def test_fuzz_api_every_bad_input_is_a_gradleak_error():
    cases = _option_cases() + _call_cases() + _scenario_cases() + _flower_cases()
    random.Random(16).shuffle(cases)
    assert len(cases) >= 150, len(cases)
    untyped, silent = [], []
    for name, call in cases:
        try:
            call()
        except GradleakError as err:
            assert isinstance(err, ValueError) and str(err).strip(), name
        except Exception as err:  # noqa: BLE001 - exactly what this test counts
            untyped.append(f"{name}: {type(err).__name__}: {str(err)[:160]}")
        else:
            silent.append(name)
    assert untyped == [] and silent == [], f"{len(untyped)} untyped, {len(silent)} accepted of {len(cases)}:\n" + \
        "\n".join(untyped + [f"{n}: accepted silently" for n in silent])


def test_option_fuzz_reaches_every_registry():
    names = [n for n, _ in _option_cases()]
    for kind in ("attack", "defense", "model", "dataset"):
        assert sum(n.startswith(kind + " ") for n in names) >= 3, kind
