"""No scored image was ever trained on or tuned on: the data contract, checked by hashing images.

For every registered dataset that ships with gradleak: its ``attack`` split shares no image with
``train`` or ``validation``, and the pool :func:`prepare_model` draws attacked batches from (an
untrained model included) lies inside ``attack``. For every shipped prior: the images its
weights file says it was trained on (recipe and fingerprint in its metadata) reproduce that
fingerprint, and none of them is in ``attack`` or ``validation``.

Before issue 14 this failed: ``prepare_model`` of commit 9089bd2 drew an untrained model's batch
from the whole dataset, so ``test_the_attacked_pool_of_an_untrained_model_is_the_attack_split``
found every train image in the pool (checked by hashing: mnist 4000 of 4000 train images and 500
validation images in its 5000-image pool; digits 1438 of 1438 and 178), and the shipped priors,
trained on the old 80 % split, had seen (by the issue's count) 8 of the 10 digits of the GIFD table.
"""

from __future__ import annotations

import json

import pytest
import torch

from gradleak.core.registry import DATASETS
from gradleak.data import load_dataset
from gradleak.data.fingerprint import fingerprint, image_hashes
from gradleak.data.splits import load_splits
from gradleak.experiment import Scenario, run_scenario
from gradleak.experiment.model_state import prepare_model
from gradleak.generative.hub import prior_provenance, shipped_generators

EMBEDDED = [n for n in DATASETS.names() if not getattr(DATASETS.get(n), "user_owned", False)]


@pytest.fixture(scope="module")
def hashed():
    """Per embedded dataset: the image hashes of each split."""
    out = {}
    for name in EMBEDDED:
        splits = load_splits(name, {})
        out[name] = {part.split: set(image_hashes(part.inputs)) for part in splits}
    return out


@pytest.mark.parametrize("name", EMBEDDED)
def test_attack_split_shares_no_image_with_train_or_validation(name, hashed):
    h = hashed[name]
    assert h["attack"], f"{name} has an empty attack split"
    assert not h["attack"] & h["train"], f"{name}: {len(h['attack'] & h['train'])} attack images are in train"
    assert not h["attack"] & h["validation"], f"{name}: attack and validation share images"
    assert not h["validation"] & h["train"], f"{name}: validation and train share images"


@pytest.mark.parametrize("name", EMBEDDED)
def test_the_attacked_pool_of_an_untrained_model_is_the_attack_split(name, hashed):
    _, pool, info = prepare_model("mlp", {"widths": (8,)}, name, {}, seed=0)
    pool_hashes = set(image_hashes(pool.inputs))
    h = hashed[name]
    assert info is None
    assert not pool_hashes & h["train"], f"{name}: the attacked pool holds {len(pool_hashes & h['train'])} train images"
    assert not pool_hashes & h["validation"], f"{name}: the attacked pool holds validation images"
    assert pool_hashes <= h["attack"]


def test_a_run_records_its_split_and_indices_and_they_point_into_the_attack_split(tmp_path, hashed):
    s = Scenario(attack="ig", dataset="digits", model="mlp", batch_size=3, attack_options={"steps": 1})
    result = run_scenario(s, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["split"] == result.split == "attack" and config["indices"] == result.indices
    full = load_dataset("digits")
    assert torch.equal(full.inputs[config["indices"]], result.truth.inputs)  # indices into the loaded dataset
    assert set(image_hashes(result.truth.inputs)) <= hashed["digits"]["attack"]


@pytest.mark.parametrize("prior", shipped_generators())
def test_a_shipped_prior_never_saw_an_attack_or_validation_image(prior):
    meta = prior_provenance(prior)
    assert "train_fingerprint" in meta, f"{prior} records no fingerprint of its training images"
    splits = load_splits(meta["dataset"], {})
    source = splits.train if meta["split"] == "train" else load_dataset(meta["dataset"])
    keep = torch.isin(source.labels, torch.tensor(meta["classes"]))
    trained_on = image_hashes(source.inputs[keep])
    # the recipe in the metadata is exactly the set of images the weights were trained on
    assert len(trained_on) == meta["train_images"] and fingerprint(trained_on) == meta["train_fingerprint"]
    seen = set(trained_on)
    for part in (splits.attack, splits.validation):
        overlap = seen & set(image_hashes(part.inputs))
        assert not overlap, f"{prior} was trained on {len(overlap)} images of the {part.split} split"
