"""IG's ``lr`` and ``tv="auto"``: the code holds what the validation-split tuning chose, and uses it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from gradleak.attacks.ig import LR, TV_BY_BATCH, TV_LATE_BY_BATCH, auto_tv, auto_tv_late
from gradleak.core.errors import ConfigError
from gradleak.core.registry import ATTACKS, create_attack
from gradleak.core.schema import check_options
from gradleak.data import sample_batch
from gradleak.fl import fedsgd_update
from gradleak.models import build_model

ROOT = Path(__file__).resolve().parents[2]


def _tuning_module():
    spec = importlib.util.spec_from_file_location("tune_ig_tv", ROOT / "bench" / "tune_ig_tv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_code_holds_the_winners_of_the_committed_validation_runs():
    tune = _tuning_module()
    runs = tune.load_runs()  # the committed docs/results/ig_tv_validation.jsonl
    assert runs and {r["split"] for r in runs} == {"validation"}
    assert not {r["seed"] for r in runs} & set(range(5))  # the reported table's seeds 0-4 took no part
    verdict = tune.confirmation(runs)  # stage 2: the stage-1 winner against the old defaults, 30 seeds
    assert verdict["adopted"] == all(verdict["new"][b] >= verdict["old"][b] for b in tune.CONFIRM_SIZES)
    if verdict["adopted"]:
        assert tune.winners(tune.stage1(runs)) == (LR, TV_BY_BATCH)
    else:
        assert (LR, set(TV_BY_BATCH.values())) == (tune.OLD[0], {tune.OLD[1]})
    assert create_attack("ig").lr == LR and create_attack("ig").tv == "auto"
    first = tune.stage1(runs)
    for lr in tune.LRS:  # every grid value was tried on every stage-1 seed, at every learning rate and size
        for b in TV_BY_BATCH:
            cell = {(r["tv"], r["seed"]) for r in first if (r["lr"], r["batch_size"]) == (lr, b)}
            assert cell == {(tv, s) for tv in tune.GRID for s in tune.STAGE1_SEEDS}
    med = tune.medians(first)
    for b, tv in TV_BY_BATCH.items():
        assert med[(LR, b, tv)] == max(med[(LR, b, other)] for other in tune.GRID)


def test_auto_tv_takes_the_largest_tuned_batch_size_not_above():
    sizes = sorted(TV_BY_BATCH)
    assert [auto_tv(b) for b in sizes] == [TV_BY_BATCH[b] for b in sizes]
    assert auto_tv(sizes[-1] * 8) == TV_BY_BATCH[sizes[-1]]
    for lo, hi in zip(sizes, sizes[1:]):
        assert all(auto_tv(b) == TV_BY_BATCH[lo] for b in range(lo, hi))


@pytest.mark.parametrize("b", [1, 2])
def test_auto_runs_exactly_as_the_tuned_number_and_says_which(digits, b):
    truth = sample_batch(digits, b, seed=b)
    model = build_model("convnet", shape=digits.shape, num_classes=10, seed=b)
    update = fedsgd_update(model, truth.inputs, truth.labels, labels_leak=True)
    auto = create_attack("ig", steps=12, labels="known").run(model, update, shape=digits.shape)
    fixed = create_attack("ig", steps=12, labels="known", tv=TV_BY_BATCH[b],
                          tv_late=auto_tv_late(b)).run(model, update, shape=digits.shape)
    other = create_attack("ig", steps=12, labels="known", tv=0.5).run(model, update, shape=digits.shape)
    assert auto.info["tv"] == TV_BY_BATCH[b] and fixed.info["tv"] == TV_BY_BATCH[b] and other.info["tv"] == 0.5
    assert torch.equal(auto.inputs, fixed.inputs) and not torch.equal(auto.inputs, other.inputs)


def test_tv_takes_auto_or_a_weight_and_refuses_other_text():
    cls = ATTACKS.get("ig")
    assert check_options(cls, {"tv": "auto"}, "attack 'ig'") == {"tv": "auto"}
    assert check_options(cls, {"tv": 0.01}, "attack 'ig'") == {"tv": 0.01}
    with pytest.raises(ConfigError, match="tv must be a finite number or one of auto, got 'strong'"):
        create_attack("ig", tv="strong")
    with pytest.raises(ConfigError, match="tv must be a number >= 0 or 'auto', got 'strong'"):
        cls(tv="strong")  # the class called directly, without the registry's option check
    with pytest.raises(ConfigError, match="tv must be between 0 and"):
        create_attack("ig", tv=-1.0)


def test_at_b4_auto_lowers_tv_at_five_eighths_and_a_number_keeps_it_constant(digits):
    truth = sample_batch(digits, 4, seed=4)
    model = build_model("convnet", shape=digits.shape, num_classes=10, seed=4)
    update = fedsgd_update(model, truth.inputs, truth.labels, labels_leak=True)

    def run(**options):
        return create_attack("ig", steps=16, labels="known", **options).run(model, update, shape=digits.shape)

    auto, constant = run(), run(tv_late=TV_BY_BATCH[4])
    assert (auto.info["tv"], auto.info["tv_late"]) == (TV_BY_BATCH[4], TV_LATE_BY_BATCH[4]) == (0.05, auto_tv_late(4))
    assert constant.info["tv_late"] == TV_BY_BATCH[4] != auto.info["tv_late"]
    assert torch.equal(constant.inputs, run(tv=TV_BY_BATCH[4]).inputs)  # a number for tv: constant, as before
    # steps 0-9 (step < 5/8 of 15) are the constant run's, step for step; from step 10 the weight is lower
    assert auto.loss_history[:10] == constant.loss_history[:10]
    assert all(a < c for a, c in zip(auto.loss_history[10:], constant.loss_history[10:], strict=True))
    assert torch.equal(run(tv_late=0.01).inputs, auto.inputs)
    with pytest.raises(ConfigError, match="tv_late must be between 0 and"):
        create_attack("ig", tv_late=-1.0)


def _passes(page: str, variant: str) -> bool:
    """Whether a committed validation page's verdict says ``variant`` is ahead by more than twice its
    standard error."""
    verdict = (ROOT / "docs" / "results" / page).read_text().strip().splitlines()[-1]
    if variant == "TV 0.05 then 0.01":  # ig_b4_variants' verdict names the variants that pass
        return "by more than twice its standard error: " in verdict and variant in verdict.split("error: ")[-1]
    return verdict.startswith("Ahead by more than twice its standard error")


def test_tv_late_is_on_exactly_where_both_validation_stages_passed():
    pages = {4: ("ig_b4_tv_schedule.md", "ig_b4_tv_confirm.md", "TV 0.05 then 0.01"),
             2: ("ig_tv_late_b2.md", "ig_tv_late_b2_confirm.md", ""), 8: ("ig_tv_late_b8.md", None, "")}
    for b, (first, second, variant) in pages.items():
        adopted = _passes(first, variant) and second is not None and _passes(second, variant)
        assert (TV_LATE_BY_BATCH.get(b) == 0.01) == adopted, b
        for page in (first, second):  # validation seeds only: never the reported seeds 0-4
            if page:
                assert "Validation split only" in (ROOT / "docs" / "results" / page).read_text()
    assert set(TV_LATE_BY_BATCH) == {2, 4} and auto_tv_late(1) == auto_tv(1) and auto_tv_late(8) == auto_tv(8)
