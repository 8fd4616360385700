"""Load generator priors: shipped ones by name, or a user's weights from a file.

Shipped weights live in ``gradleak/generative/weights/NAME.safetensors`` (fp16, with the
constructor config in the file's metadata) and load by name: ``mnist-dcgan`` (all ten digits) and
``mnist04-dcgan`` (digits 0–4 only, an out-of-distribution prior for digits 5–9). Reproduce them
with ``gradleak prior train`` (see the README).

A user's generator loads from a safetensors file written by :func:`~gradleak.generative.train.save_generator`
(the config is in its metadata), or from any safetensors / ``torch.save`` state-dict file into a
:class:`~gradleak.generative.base.Generator` instance they built (``torch.load(weights_only=True)``:
no code is unpickled).

Example:
    >>> g = load_generator("mnist-dcgan")
    >>> g.latent_dim, g.num_classes, g.image_shape
    (128, 10, (1, 28, 28))
    >>> "mnist04-dcgan" in shipped_generators()
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from gradleak.core.errors import ConfigError, DataError, UnknownNameError
from gradleak.core.schema import check_options
from gradleak.core.torchfile import check_file, first_line, load_weights_only
from gradleak.generative.base import Generator
from gradleak.generative.dcgan import ConditionalDCGAN

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ARCHITECTURES = {"dcgan": ConditionalDCGAN}


def shipped_generators() -> list[str]:
    """Names of the generators that ship with gradleak."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def prior_provenance(name: str) -> dict:
    """What a shipped prior records about its training: dataset, split, classes, epochs, seed, the
    number of training images and ``train_fingerprint`` (:func:`gradleak.data.fingerprint.fingerprint`
    of their hashes), from the weights file's metadata.

    Example:
        >>> p = prior_provenance("mnist-dcgan")
        >>> p["dataset"], p["split"], p["train_images"]
        ('mnist', 'train', 4000)
    """
    if name not in shipped_generators():
        raise UnknownNameError("shipped generator", name, shipped_generators())
    from safetensors import safe_open

    with safe_open(str(WEIGHTS_DIR / f"{name}.safetensors"), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta.get("extra", "{}"))


def load_generator(source: str | Path | Generator, *, generator: Generator | None = None) -> Generator:
    """A generator in eval mode from a shipped name, a weights file, or an existing instance.

    Args:
        source: a shipped name (``mnist-dcgan``), a path to ``.safetensors`` or a torch state-dict
            file (``.pt``/``.pth``), or a :class:`Generator` (returned as is, in eval mode).
        generator: the module to load a file into (needed when the file has no gradleak config).

    Raises:
        UnknownNameError: neither a shipped name nor an existing file (lists the shipped names).
        ConfigError: the weights do not fit the generator (names or shapes).
        DataError: the file cannot be read.
    """
    if isinstance(source, Generator):
        return source.eval()
    path = WEIGHTS_DIR / f"{source}.safetensors" if str(source) in shipped_generators() else Path(source)
    if not path.is_file():
        raise UnknownNameError("generator (or path to a .safetensors/.pt file)", str(source),
                               shipped_generators())
    state, config = _read(path)
    if generator is None:
        if config is None:
            raise ConfigError(f"{path} holds weights without a gradleak config; build your Generator and "
                              f"pass it: load_generator(path, generator=MyGenerator(...))")
        arch = config.pop("arch", "dcgan")
        if not isinstance(arch, str) or arch not in ARCHITECTURES:
            raise ConfigError(f"{path} is for architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
        factory = ARCHITECTURES[arch]
        generator = factory(**check_options(factory, config, f"the generator config in {path}"))
    load_weights(generator, state, source=str(path))
    return generator.eval()


def load_weights(generator: Generator, state: Mapping[str, torch.Tensor], *, source: str = "weights") -> None:
    """Copy ``state`` into ``generator`` (cast to its dtype); mismatches raise :class:`ConfigError`."""
    own = generator.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: shape {tuple(state[k].shape)} in the file vs {tuple(own[k].shape)} in the generator"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = ([f"missing {missing[:4]}"] if missing else []) + ([f"unexpected {extra[:4]}"] if extra else [])
    problems += shapes[:4]
    if problems:
        raise ConfigError(f"{source} does not fit the {type(generator).__name__} generator: "
                          + "; ".join(problems)
                          + " (build the generator with the settings the weights were trained with)")
    generator.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    check_file(path, "generator weights", ".safetensors or .pt")
    if path.suffix == ".safetensors":
        try:
            from safetensors import SafetensorError, safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            config = json.loads(meta["config"]) if "config" in meta else None
        except (SafetensorError, OSError, RuntimeError, ValueError) as err:
            raise DataError(f"cannot read generator weights {path}: {first_line(err)}") from None
        if config is not None and not isinstance(config, dict):
            raise DataError(f"{path}: its 'config' metadata must be a JSON object, got {type(config).__name__}")
        return state, config
    obj = load_weights_only(path, "generator weights")
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj, config = obj["state_dict"], obj.get("config")
        if config is not None and not isinstance(config, Mapping):
            raise DataError(f"{path}: its 'config' entry must be a mapping, got {type(config).__name__}")
        config = dict(config) if config is not None else None
    else:
        config = None
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in obj.items()):
        raise DataError(f"{path} does not hold a state dict (name → tensor), got {type(obj).__name__}; "
                        "save one with torch.save(generator.state_dict(), path)")
    return dict(obj), config
