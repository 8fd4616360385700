"""Datasets: natural32, faces, the user's own files (CIFAR pickles, IDX, image folders), splits."""

from __future__ import annotations

import gzip
import json
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from gradleak.cli import main
from gradleak.core.errors import ConfigError, DataError
from gradleak.data import Dataset, load_dataset
from gradleak.data.catalog import describe_datasets
from gradleak.data.natural import PHOTOS, build_natural
from gradleak.data.splits import load_splits, split_dataset


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GRADLEAK_CACHE", str(folder))
    return folder


# --- natural32 ------------------------------------------------------------------------------

@pytest.mark.slow
def test_natural32_shape_classes_count_cache_and_determinism(cache):
    ds = load_dataset("natural32", per_class=12)
    assert ds.shape == (3, 32, 32) and ds.num_classes == len(PHOTOS) == 10 and len(ds) == 120
    assert ds.inputs.dtype == torch.float32 and 0 <= ds.inputs.min() and ds.inputs.max() <= 1
    assert torch.bincount(ds.labels).tolist() == [12] * 10
    files = list((cache / "datasets").glob("natural32-*.npz"))
    assert len(files) == 1  # built once and cached
    again = load_dataset("natural32", per_class=12)  # read back from the cache
    assert torch.equal(ds.inputs, again.inputs) and torch.equal(ds.labels, again.labels)
    # the colour photos give colour crops, and no crop is flat
    assert (ds.inputs[:, 0] - ds.inputs[:, 2]).abs().mean() > 0.02
    assert (ds.inputs.flatten(1).std(1) > 0.01).all()
    train, test = load_dataset("natural32", per_class=12, split="train"), \
        load_dataset("natural32", per_class=12, split="test")
    assert len(train) == 90 and len(test) == 30
    other_seed = load_dataset("natural32", per_class=12, seed=1)
    assert not torch.equal(other_seed.inputs, ds.inputs)


def test_natural32_test_crops_come_from_a_disjoint_band(monkeypatch):
    # a 40x200 ramp photo: the column index is encoded in the pixel values
    ramp = np.tile(np.linspace(0, 255, 200).astype(np.uint8)[None, :, None], (80, 1, 3))
    monkeypatch.setattr("gradleak.data.natural.PHOTOS", {"a": lambda: ramp, "b": lambda: 255 - ramp})
    images, labels, test = build_natural(per_class=8, size=8, seed=0)
    assert images.shape == (16, 8, 8, 3) and test.sum() == 4
    cut = 0.75 * 255
    a = labels == 0
    assert images[a & ~test].max() <= cut + 3 and images[a & test].min() >= cut - 3


def test_natural32_bad_options():
    with pytest.raises(ConfigError, match="split"):
        load_dataset("natural32", split="validation")
    with pytest.raises(ConfigError, match="per_class"):
        load_dataset("natural32", per_class=1)


# --- faces ----------------------------------------------------------------------------------

def test_faces_shape_labels_and_resize():
    ds = load_dataset("faces")
    assert ds.shape == (1, 25, 25) and ds.num_classes == 2 and len(ds) == 200
    assert ds.labels[:100].eq(1).all() and ds.labels[100:].eq(0).all()
    big = load_dataset("faces", size=32)
    assert big.shape == (1, 32, 32) and 0 <= big.inputs.min() and big.inputs.max() <= 1
    with pytest.raises(ConfigError, match="size"):
        load_dataset("faces", size=2)


# --- CIFAR python batches -------------------------------------------------------------------

def _cifar_batch(path, n, seed, label_key=b"labels", classes=10, extra=None):
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"test", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             label_key: rng.integers(0, classes, n).tolist(), **(extra or {})}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return batch


def test_cifar10_reads_batches_and_splits(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = [_cifar_batch(root / f"data_batch_{i}", 3, i) for i in range(1, 6)]
    test = _cifar_batch(root / "test_batch", 4, 9)
    ds = load_dataset("cifar10", data_dir=tmp_path)  # the parent folder works too
    assert ds.shape == (3, 32, 32) and ds.num_classes == 10 and len(ds) == 15
    expected = torch.from_numpy(batches[0][b"data"][1].reshape(3, 32, 32)).float() / 255
    assert torch.allclose(ds.inputs[1], expected)
    assert ds.labels[:3].tolist() == batches[0][b"labels"]
    held_out = load_dataset("cifar10", data_dir=root, split="test")
    assert len(held_out) == 4 and held_out.labels.tolist() == test[b"labels"]
    assert len(load_dataset("cifar10", data_dir=root, split="all")) == 19
    splits = load_splits("cifar10", {"data_dir": root})  # the native test batch → validation + attack
    assert (len(splits.train), len(splits.validation) + len(splits.attack)) == (15, 4)
    assert splits.attack.split == "attack" and set(splits.attack.indices.tolist()) <= {0, 1, 2, 3}


def test_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 6), ("test", 2)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"fine_labels": rng.integers(0, 100, n).tolist(),
                 b"coarse_labels": rng.integers(0, 20, n).tolist()}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=5))  # numpy 2 / protocol 5 too
    fine = load_dataset("cifar100", data_dir=tmp_path)
    coarse = load_dataset("cifar100", data_dir=tmp_path, coarse=True, split="test")
    assert (fine.num_classes, len(fine), coarse.num_classes, len(coarse)) == (100, 6, 20, 2)


def test_cifar_malformed_batches_are_refused(tmp_path):
    for i in range(1, 6):
        _cifar_batch(tmp_path / f"data_batch_{i}", 2, i)
    good = (tmp_path / "data_batch_1").read_bytes()
    (tmp_path / "data_batch_1").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DataError, match="truncated"):
        load_dataset("cifar10", data_dir=tmp_path)
    (tmp_path / "data_batch_1").write_bytes(good)
    with pytest.raises(DataError, match="test_batch"):  # missing file, named
        load_dataset("cifar10", data_dir=tmp_path, split="test")
    _cifar_batch(tmp_path / "data_batch_2", 2, 2, extra={b"data": np.zeros((2, 100), np.uint8)})
    with pytest.raises(DataError, match="3072"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10")
    with pytest.raises(ConfigError, match="split"):
        load_dataset("cifar10", data_dir=tmp_path, split="val")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_cifar_pickle_with_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    for i in range(1, 6):
        _cifar_batch(tmp_path / f"data_batch_{i}", 2, i)
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Payload(marker)}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataError, match="refused"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


# --- IDX ------------------------------------------------------------------------------------

def _idx(path, array, magic, compress):
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_mnist_and_fashion(tmp_path, compress):
    rng = np.random.default_rng(0)
    sfx = ".gz" if compress else ""
    for prefix, n in (("train", 5), ("t10k", 3)):
        _idx(tmp_path / f"{prefix}-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
             2051, compress)
        _idx(tmp_path / f"{prefix}-labels-idx1-ubyte{sfx}", rng.integers(0, 10, n, dtype=np.uint8), 2049,
             compress)
    for name in ("mnist-idx", "fashion-mnist"):
        ds = load_dataset(name, data_dir=tmp_path)
        assert ds.shape == (1, 28, 28) and ds.num_classes == 10 and len(ds) == 5
        assert len(load_dataset(name, data_dir=tmp_path, split="test")) == 3
        assert len(load_dataset(name, data_dir=tmp_path, split="all")) == 8


def test_idx_wrong_magic_and_truncation(tmp_path):
    imgs = np.zeros((4, 28, 28), np.uint8)
    _idx(tmp_path / "train-images-idx3-ubyte", imgs, 2049, False)  # a label magic on an image file
    _idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8), 2049, False)
    with pytest.raises(DataError, match="magic number"):
        load_dataset("mnist-idx", data_dir=tmp_path)
    _idx(tmp_path / "train-images-idx3-ubyte", imgs, 2051, False)
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist-idx", data_dir=tmp_path)
    with pytest.raises(DataError, match="t10k"):
        load_dataset("mnist-idx", data_dir=tmp_path, split="test")


# --- image folder ---------------------------------------------------------------------------

def _folder(root, mode="RGB", sizes=((6, 6),)):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i, size in enumerate(sizes * 2):
            channels = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, channels, dtype=np.uint8), mode).save(root / c / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")


def test_imagefolder_rgb_grey_and_resize(tmp_path):
    _folder(tmp_path / "rgb")
    ds = load_dataset("imagefolder", data_dir=tmp_path / "rgb")
    assert ds.shape == (3, 6, 6) and ds.num_classes == 2 and ds.labels.tolist() == [0, 0, 1, 1]
    raw = np.array(Image.open(tmp_path / "rgb" / "dog" / "1.png"))
    assert torch.allclose(ds.inputs[3], torch.from_numpy(raw).permute(2, 0, 1).float() / 255)
    _folder(tmp_path / "grey", mode="L", sizes=((6, 6), (9, 7)))
    grey = load_dataset("imagefolder", data_dir=tmp_path / "grey")
    assert grey.shape == (1, 6, 6) and len(grey) == 8  # mixed sizes resized to the first
    assert load_dataset("imagefolder", data_dir=tmp_path / "grey", size=4, channels=3).shape == (3, 4, 4)


def test_imagefolder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset("imagefolder", data_dir=tmp_path / "empty")
    (tmp_path / "empty" / "a").mkdir()
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(DataError, match="hold no images"):
        load_dataset("imagefolder", data_dir=tmp_path / "empty")
    _folder(tmp_path / "bad")
    (tmp_path / "bad" / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset("imagefolder", data_dir=tmp_path / "bad")
    with pytest.raises(DataError, match="not a folder"):
        load_dataset("imagefolder", data_dir=tmp_path / "missing")


# --- splits and the catalogue ---------------------------------------------------------------

def test_split_is_stratified_disjoint_and_fixed(digits):
    train, validation, attack = split_dataset(digits)
    assert len(train) + len(validation) + len(attack) == len(digits)
    held = torch.bincount(torch.cat([validation.labels, attack.labels]), minlength=10).float()
    assert ((held / torch.bincount(digits.labels).float() - 0.2).abs() < 0.02).all()
    assert (torch.bincount(attack.labels, minlength=10) >= torch.bincount(validation.labels, minlength=10)).all()
    rows = {tuple(x.flatten().tolist()) for x in train.inputs}
    assert not any(tuple(x.flatten().tolist()) in rows for x in torch.cat([validation.inputs, attack.inputs]))
    again = split_dataset(digits).attack
    assert torch.equal(again.inputs, attack.inputs) and torch.equal(again.indices, attack.indices)
    assert torch.equal(digits.inputs[attack.indices], attack.inputs)


def test_duplicate_images_stay_on_one_side_of_the_split():
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x[20:] = x[:20]  # every image twice
    ds = Dataset("dup", x, torch.arange(40) % 2, 2)
    train, validation, attack = split_dataset(ds)
    seen = {tuple(v.flatten().tolist()) for v in train.inputs}
    assert len(attack) >= 2 and not any(tuple(v.flatten().tolist()) in seen for v in attack.inputs)
    assert len(train) + len(validation) + len(attack) == 40


def test_catalogue_describes_user_owned_formats_without_loading(monkeypatch):
    loaded = []

    def fake_create(name, **kw):
        loaded.append(name)
        return Dataset(name, torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]), 2, "fake")

    monkeypatch.setattr("gradleak.data.catalog.DATASETS.create", fake_create)
    rows = {r["name"]: r for r in describe_datasets() if r["name"] in ("cifar10", "mnist-idx")}
    assert rows["cifar10"]["shape"] == [3, 32, 32] and rows["mnist-idx"]["classes"] == 10
    assert "cifar10" not in loaded and "mnist-idx" not in loaded


@pytest.mark.slow
def test_datasets_command(tmp_path, capsys, cache):
    _folder(tmp_path / "imgs")
    assert main(["datasets", "--json", "--data-dir", str(tmp_path / "imgs")]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"natural32", "faces", "cifar10", "cifar100", "mnist-idx", "fashion-mnist",
            "imagefolder"} <= set(rows)
    assert rows["natural32"]["shape"] == [3, 32, 32] and rows["natural32"]["size"] == 3000
    assert rows["digits"]["size"] == 1797 and rows["faces"]["classes"] == 2
    assert rows["imagefolder"]["size"] == 4 and rows["cifar10"]["source"].startswith("error")


@pytest.mark.parametrize("name", ["digits", "faces"])
def test_declared_shape_and_classes_match_the_data(name):
    from gradleak.core.registry import DATASETS
    from gradleak.data import load_dataset

    ds, factory = load_dataset(name), DATASETS.get(name)
    assert (tuple(ds.shape), ds.num_classes) == (factory.shape, factory.classes)
