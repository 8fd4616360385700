"""Hostile files: everything a careless or hostile user may hand to gradleak (used by the fuzz test
and by ``bench/hostile_inputs.py``). Each builder writes under ``root`` and returns the path.
"""

from __future__ import annotations

import functools
import gzip
import json
import pickle
import sqlite3
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

TINY_BASE = '[base]\nattack = "ig"\ndataset = "digits"\nmodel = "mlp"\nsteps = 2\n'


def user_run_dir(root: Path) -> Path:
    """A folder the user made that happens to hold a ``config.json`` and ``notes.txt``."""
    d = root / "mine"
    d.mkdir()
    (d / "config.json").write_text('{"my": "own config"}\n')
    (d / "notes.txt").write_text("my notes\n")
    return d


def marked_dir(root: Path, name: str, listed: list[str], present: dict[str, str | None]) -> Path:
    """A folder carrying gradleak's marker (listing ``listed``) with ``present`` files (None: a folder)."""
    d = root / name
    d.mkdir()
    (d / ".gradleak-run").write_text(json.dumps({"gradleak": "0", "kind": "run", "files": listed}))
    for fname, text in present.items():
        (d / fname).mkdir() if text is None else (d / fname).write_text(text)
    return d


def user_sqlite(root: Path, *, runs_table: bool) -> Path:
    """A user's own SQLite file (with a ``runs`` table of their own, or another table)."""
    path = root / ("user-runs.sqlite" if runs_table else "user-other.sqlite")
    conn = sqlite3.connect(path)
    table = "runs" if runs_table else "people"
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute(f"INSERT INTO {table} (name) VALUES ('alice'), ('bob')")
    conn.commit()
    conn.close()
    return path


def newer_gradleak_sqlite(root: Path) -> Path:
    """A database stamped as gradleak's, but by a newer schema (99)."""
    path = root / "newer.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1735158577")
    conn.execute("PRAGMA user_version = 99")
    conn.execute("CREATE TABLE runs (key TEXT)")
    conn.commit()
    conn.close()
    return path


@functools.lru_cache(maxsize=4)
def _digits_update(n: int = 2, model: str = "convnet"):
    from gradleak.data import load_dataset, sample_batch
    from gradleak.fl import fedsgd_update
    from gradleak.models import build_model

    ds = load_dataset("digits")
    truth = sample_batch(ds, n, seed=0)
    net = build_model(model, shape=ds.shape, num_classes=10, seed=0)
    return fedsgd_update(net, truth.inputs, truth.labels)


def update_file(root: Path, name: str, meta: str | None, *, change=None, model: str = "convnet") -> Path:
    """A saved update of ``model`` on ``digits`` with raw ``gradleak`` metadata; ``change`` edits tensors."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in _digits_update(model=model).tensors.items()}
    if change is not None:
        tensors = change(tensors)
    path = root / f"{name}.safetensors"
    save_file(tensors, str(path), metadata=None if meta is None else {"gradleak": meta})
    return path


def update_files(root: Path) -> dict[str, Path]:
    """Every hostile saved update: malformed metadata and unusable tensors."""
    ok = json.dumps({"kind": "gradients", "num_examples": 2})
    first = "1.weight"
    metas = {
        "json": "{not json", "list": "[1, 2]", "n_abc": '{"num_examples": "abc"}', "n_float": '{"num_examples": 1.5}',
        "n_neg": '{"num_examples": -3}', "n_bool": '{"num_examples": true}', "n_null": '{"num_examples": null}',
        "kind": '{"num_examples": 2, "kind": "sideways"}', "extra_key": '{"num_examples": 2, "colour": "red"}',
        "lt_list": '{"num_examples": 2, "kind": "weight_delta", "local_training": [0.1, 1]}',
        "lt_keys": '{"num_examples": 2, "kind": "weight_delta", "local_training": {"lr": 0.1, "mom": 1}}',
        "lt_lr": '{"num_examples": 2, "kind": "weight_delta", "local_training": {"lr": "fast"}}',
        "lt_epochs": '{"num_examples": 2, "kind": "weight_delta", "local_training": {"lr": 0.1, "epochs": 1.5}}',
        "lt_momentum": '{"num_examples": 2, "kind": "weight_delta", "local_training": {"lr": 0.1, "momentum": -1}}',
        "lt_optimizer": '{"num_examples": 2, "kind": "weight_delta", "local_training": {"optimizer": "rmsprop"}}',
        "lt_betas": '{"num_examples": 2, "kind": "weight_delta", "local_training": {"optimizer": "adam", '
                    '"betas": [2, 0]}}',
        "lt_nesterov": '{"num_examples": 2, "kind": "weight_delta", "local_training": {"nesterov": "yes"}}',
        "lt_decay": '{"num_examples": 2, "kind": "weight_delta", "local_training": {"weight_decay": -0.5}}',
        "delta_no_lt": '{"num_examples": 2, "kind": "weight_delta"}',
        "no_n": '{"kind": "gradients"}',
    }
    out = {k: update_file(root, f"u-{k}", v) for k, v in metas.items()}
    edits = {
        "nan": lambda t: {**t, first: t[first].clone().fill_(float("nan"))},
        "huge": lambda t: {**t, first: t[first] * 0 + 1e38},
        "zeros": lambda t: {k: torch.zeros_like(v) for k, v in t.items()},
        "equal": lambda t: {k: torch.full_like(v, 0.25) for k, v in t.items()},
        "int64": lambda t: {**t, first: t[first].long()},
        "bool": lambda t: {**t, first: t[first] > 0},
        "missing_tensor": lambda t: {k: v for k, v in t.items() if k != first},
        "extra_tensor": lambda t: {**t, "ghost.weight": torch.ones(3)},
        "wrong_shape": lambda t: {**t, first: torch.ones(3, 3)},
    }
    out.update({k: update_file(root, f"u-{k}", ok, change=fn) for k, fn in edits.items()})
    out["other_model"] = update_file(root, "u-mlp", ok, model="mlp")
    (root / "u-random.safetensors").write_bytes(bytes(range(256)) * 4)
    (root / "u-empty.safetensors").write_bytes(b"")
    (root / "u-dir.safetensors").mkdir()
    out.update(random=root / "u-random.safetensors", empty=root / "u-empty.safetensors",
               dir=root / "u-dir.safetensors", missing=root / "u-missing.safetensors")
    return out


def checkpoints(root: Path) -> dict[str, Path]:
    """Unusable checkpoints for ``convnet`` on ``digits``."""
    from safetensors.torch import save_file

    from gradleak.models import build_model

    state = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0).state_dict()
    out = {name: root / f"ck-{name}" for name in ("empty.pt", "random.pt", "dir", "list.pt", "intkeys.pt",
                                                    "nan.safetensors", "wide.safetensors", "cut.safetensors")}
    out["empty.pt"].write_bytes(b"")
    out["random.pt"].write_bytes(bytes(range(256)) * 8)
    out["dir"].mkdir()
    torch.save([torch.ones(2)], out["list.pt"])
    torch.save({1: torch.ones(2)}, out["intkeys.pt"])
    first = next(iter(state))
    save_file({k: (v.clone().fill_(float("nan")) if k == first else v).contiguous() for k, v in state.items()},
              str(out["nan.safetensors"]))
    wide = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0, width=8).state_dict()
    save_file({k: v.contiguous() for k, v in wide.items()}, str(out["wide.safetensors"]))
    out["cut.safetensors"].write_bytes(out["wide.safetensors"].read_bytes()[:300])
    out["evil.pt"] = evil_pickle(root)
    out["missing.pt"] = root / "ck-missing.pt"
    return out


def evil_pickle(root: Path) -> Path:
    """A ``.pt`` file that asks to run ``os.system`` when unpickled."""

    class Evil:
        def __reduce__(self):  # noqa: D105
            import os

            return (os.system, ("echo pwned > /tmp/gradleak-pwned",))

    path = root / "evil.pt"
    path.write_bytes(pickle.dumps(Evil()))
    return path


def cifar_dir(root: Path, name: str, labels: object, *, data: object = None, raw: bytes | None = None) -> Path:
    """A CIFAR-10 folder whose batches carry ``labels`` (or are the ``raw`` bytes)."""
    d = root / name
    d.mkdir()
    data = np.zeros((2, 3072), dtype=np.uint8) if data is None else data
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        if raw is not None:
            (d / fname).write_bytes(raw)
        else:
            with open(d / fname, "wb") as f:
                pickle.dump({b"data": data, b"labels": labels}, f)
    return d


def idx_dir(root: Path, name: str, *, items: int, corrupt_gz: bool = False, magic: int = 2051,
            truncate: bool = False) -> Path:
    """An MNIST IDX folder with ``items`` images (zero allowed), corrupt ``.gz``, a bad magic or cut files."""
    d = root / name
    d.mkdir()
    for prefix in ("train", "t10k"):
        images = struct.pack(">IIII", magic, items, 28, 28) + bytes(items * 784)
        labels = struct.pack(">II", 2049, items) + bytes(items)
        if truncate:
            images = images[:-100]
        if corrupt_gz:
            (d / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images)[:40] + b"garbage" * 10)
            (d / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 30)
        else:
            (d / f"{prefix}-images-idx3-ubyte").write_bytes(images)
            (d / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)
    return d


def png_bytes(width: int, height: int, rows: int = 64) -> bytes:
    """A greyscale PNG whose header claims ``width × height`` (only ``rows`` rows of data)."""
    raw = zlib.compress(b"\x00" * (width + 1) * rows, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def image_dirs(root: Path) -> dict[str, Path]:
    """Image folders: a decompression bomb, a non-image, a single class, a 5000 × 5000 image (its header:
    it is refused before its pixels are decoded)."""
    out = {}
    for name, files in (("bomb", {"a": png_bytes(30000, 30000), "b": png_bytes(30000, 30000)}),
                        ("large", {"a": png_bytes(5000, 5000, rows=8), "b": png_bytes(8, 8, rows=8)}),
                        ("notimage", {"a": b"this is text", "b": png_bytes(8, 8, rows=8)}),
                        ("oneclass", {"a": png_bytes(8, 8, rows=8)})):
        d = root / f"img-{name}"
        for cls, data in files.items():
            (d / cls).mkdir(parents=True)
            (d / cls / "x.png").write_bytes(data)
        out[name] = d
    return out


def grid(root: Path, name: str, text: str) -> Path:
    """A grid file."""
    path = root / f"{name}.toml"
    path.write_text(text)
    return path


def grids(root: Path, seeds: int = 30_000) -> dict[str, Path]:
    """Every hostile grid (``seeds``: the length of a seed list far beyond the 10 000-run limit)."""
    deep = "[base]\nattack = \"ig\"\nx = " + "[" * 5000 + "]" * 5000 + "\n"
    seeds = "[grid]\nseed = [" + ", ".join(str(i) for i in range(seeds)) + "]\n"
    texts = {
        "empty": "", "comment_only": "# nothing\n[sweep]\ndescription = 'x'\n", "deep": deep,
        "deep9": TINY_BASE + "[grid]\nx = " + "[" * 9 + "1" + "]" * 9 + "\n",
        "seeds": TINY_BASE + seeds, "bad_toml": "[base\nattack = ig\n",
        "width": TINY_BASE.replace('"mlp"', '"convnet"') + "model-option.width = -4\n",
        "width0": TINY_BASE.replace('"mlp"', '"convnet"') + "model-option.width = 0\n",
        "widths": TINY_BASE + 'model-option.widths = "abc"\n',
        "huge_model": TINY_BASE.replace('"mlp"', '"convnet"') + "model-option.width = 100000\n",
        "restarts": TINY_BASE + "restarts = 1e9\n", "steps_str": TINY_BASE.replace("steps = 2", 'steps = "many"'),
        "sigma": TINY_BASE + 'defense = "noise:sigma=abc"\n', "tv_nan": TINY_BASE + "param.tv = nan\n",
        "lr_inf": TINY_BASE + "param.lr = inf\n", "unknown_option": TINY_BASE + "colour = 'red'\n",
        "max_runs0": "[sweep]\nmax_runs = 0\n" + TINY_BASE, "seed_str": TINY_BASE + "[grid]\nseed = ['a', 1]\n",
        "seed_big": TINY_BASE + "seed = 9223372036854775807\n",
        "empty_list": TINY_BASE + "[grid]\nseed = []\n", "base_scalar": "base = 3\n",
        "presets_scalar": "[presets]\nx = 3\n", "per_attack_junk": TINY_BASE + "[per_attack]\nig = 3\n",
        "bad_chain": TINY_BASE + 'defense = [["aggregate:clients=2", "noise:sigma=0.1"]]\n',
        "local_epochs": TINY_BASE + "protocol = 'fedavg'\nlocal-epochs = 1.5\n",
        "model_state": TINY_BASE + "model-state = 'trained:99999999'\n",
        "epochs_neg": TINY_BASE + "model-state = 'trained:-1'\n",
        "embedded_data_dir": TINY_BASE + "data-dir = '/tmp'\n",
        "bad_label_mode": TINY_BASE + "label-mode = 'sideways'\n",
    }
    out = {name: grid(root, name, text) for name, text in texts.items()}
    out["too_big"] = root / "too_big.toml"
    out["too_big"].write_text(TINY_BASE + "# " + "x" * (17 * 2**20) + "\n")
    return out


def build_all(root: Path) -> SimpleNamespace:
    """Every hostile file under ``root``, as attributes."""
    root.mkdir(parents=True, exist_ok=True)
    afile = root / "afile"
    afile.write_text("a file")
    report = root / "report.html"
    report.write_text("<p>my report</p>")
    textdb = root / "notes.sqlite"
    textdb.write_text("not sqlite at all\n" * 20)
    emptydb = root / "empty.sqlite"
    emptydb.write_bytes(b"")
    return SimpleNamespace(
        root=root, afile=afile, report=report, textdb=textdb, emptydb=emptydb, user=user_run_dir(root),
        db_runs=user_sqlite(root, runs_table=True), db_other=user_sqlite(root, runs_table=False),
        db_newer=newer_gradleak_sqlite(root),
        png_dir=marked_dir(root, "png-dir", ["config.json", "reconstruction.png"], {"reconstruction.png": None}),
        foreign_tensors=marked_dir(root, "foreign-tensors", ["config.json"],
                                   {"config.json": "{}", "tensors.safetensors": "mine"}),
        updates=update_files(root), ck=checkpoints(root), grids=grids(root), images=image_dirs(root),
        cifar={"str": cifar_dir(root, "cifar-str", ["a", "b"]), "huge": cifar_dir(root, "cifar-huge", [10**30, 1]),
               "neg": cifar_dir(root, "cifar-neg", [-1, 1]), "evil": cifar_dir(root, "cifar-evil", None,
                                                                              raw=evil_pickle(root).read_bytes()),
               "cut": cifar_dir(root, "cifar-cut", None, raw=pickle.dumps({b"data": 1})[:-3]),
               "shape": cifar_dir(root, "cifar-shape", [0, 1], data=np.zeros((2, 10), dtype=np.uint8)),
               "many": cifar_dir(root, "cifar-many", [0, 1, 2], data=np.zeros((2, 3072), dtype=np.uint8))},
        idx={"zero": idx_dir(root, "idx0", items=0), "gz": idx_dir(root, "idxgz", items=2, corrupt_gz=True),
             "magic": idx_dir(root, "idxmagic", items=2, magic=1234),
             "cut": idx_dir(root, "idxcut", items=2, truncate=True)},
    )
