"""Your own architecture as the attacked model: ``--model path/to/file.py:factory`` or ``package.module:factory``.

A model spec with a colon names a factory — a function (or class) that returns an
``nn.Module`` — instead of a registered model. The factory is called with the keyword
arguments it accepts among ``shape`` (``(C, H, W)``), ``num_classes``, ``seed`` and the
``--model-option`` values, under ``torch.manual_seed(seed)`` (the global random state is
restored afterwards), so the same seed builds the same initial weights.

The model receives pixels in ``[0, 1]``, as every gradleak model does: put your input
normalisation inside the model (``gradleak.models.Normalize`` or your own first module), or
the reconstruction is compared against the wrong pixel scale.

A file is imported as a module of its own (its folder is not added to ``sys.path``); it may
import anything installed. Loading it runs its code, exactly like ``python file.py`` would:
only point gradleak at files you trust.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> src = Path(tempfile.mkdtemp()) / "net.py"
    >>> _ = src.write_text("import torch\\n"
    ...     "def build(shape, num_classes):\\n"
    ...     "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(shape[1] * shape[2], num_classes))\\n")
    >>> model = build_named_model(f"{src}:build", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> type(model).__name__, is_user_model(f"{src}:build"), is_user_model("convnet")
    ('Sequential', True, False)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradleak.core.errors import ConfigError
from gradleak.models import build_model

PASSED = ("shape", "num_classes", "seed")
"""What gradleak passes to a factory that accepts it."""


def is_user_model(spec: str) -> bool:
    """Whether ``spec`` names a factory (``FILE.py:NAME`` or ``module:NAME``), not a registered model."""
    return isinstance(spec, str) and ":" in spec


def split_spec(spec: str) -> tuple[str, str]:
    """``"models/net.py:build"`` → ``("models/net.py", "build")``; a bad spec raises ConfigError."""
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise ConfigError(f"model {spec!r}: write FILE.py:FACTORY or package.module:FACTORY, e.g. "
                          "--model my_model.py:build (FACTORY is the function that returns the nn.Module)")
    return where, name


def load_factory(spec: str) -> Callable[..., Any]:
    """The factory named by ``spec``; a missing file, module or attribute raises ConfigError."""
    where, name = split_spec(spec)
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(Path(where).expanduser())
    else:
        try:
            module = importlib.import_module(where)
        except Exception as err:  # ImportError, or the module's own code failing as it is imported
            raise ConfigError(f"model {spec!r}: cannot import module {where!r} ({type(err).__name__}: "
                              f"{str(err)[:200]}); pass a file path ending in .py, or install the package "
                              "that holds it") from err
    factory = getattr(module, name, None)
    if not callable(factory):
        found = sorted(n for n, v in vars(module).items()
                       if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__)
        raise ConfigError(f"model {spec!r}: {where} has no function or class {name!r}"
                          f"{'; it defines: ' + ', '.join(found) if found else ''}")
    return factory


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist; pass --model PATH/TO/FILE.py:FACTORY")
    source = path.read_bytes()
    module_name = "gradleak_user_model_" + hashlib.sha256(str(path.resolve()).encode() + source).hexdigest()[:12]
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"model file {path} cannot be imported as Python; it must end in .py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise ConfigError(f"model file {path} failed to import: {type(err).__name__}: {err}") from err
    return module


def source_digest(spec: str) -> str | None:
    """A hash of a model file's contents (``None`` for a module spec): part of a trained model's cache key."""
    where, _ = split_spec(spec)
    path = Path(where).expanduser()
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def build_user_model(spec: str, *, shape: Sequence[int], num_classes: int, seed: int,
                     options: Mapping[str, Any] | None = None) -> nn.Module:
    """Call the factory of ``spec`` with what it accepts and check that it returns an ``nn.Module``."""
    factory = load_factory(spec)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = {"shape": tuple(shape), "num_classes": num_classes, "seed": seed}
    kwargs = {k: v for k, v in given.items() if takes_any or k in params}
    options = dict(options or {})
    if not takes_any:
        _refuse_unknown(spec, params, options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(**kwargs, **options)
        except TypeError as err:
            raise ConfigError(f"model {spec!r} could not be built ({err}); a factory may take shape, "
                              "num_classes, seed and its own --model-option values as keywords") from err
        except Exception as err:  # the user's code failed: say where, not a gradleak traceback
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise ConfigError(f"model {spec!r}: the factory raised {type(err).__name__}: {first} "
                              "(fix the factory or its --model-option values)") from err
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {spec!r} returned {type(model).__name__}, not a torch.nn.Module; "
                          "the factory must return the model (an nn.Module instance)")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"model {spec!r} has no trainable parameters, so a client update would be empty; "
                          "return the model the clients train")
    return model


def build_named_model(name: str, *, shape: Sequence[int], num_classes: int, seed: int,
                      options: Mapping[str, Any] | None = None) -> nn.Module:
    """A registered model by name, or the user's factory when ``name`` is a ``FILE.py:FACTORY`` spec."""
    if is_user_model(name):
        return build_user_model(name, shape=shape, num_classes=num_classes, seed=seed, options=options)
    return build_model(name, shape=shape, num_classes=num_classes, seed=seed, **dict(options or {}))


def check_model(name: str, options: Mapping[str, Any] | None = None) -> None:
    """Raise a ``GradleakError`` when ``name`` (registered or ``FILE.py:FACTORY``) cannot take ``options``.

    Example:
        >>> check_model("convnet", {"width": 8})
    """
    from gradleak.core.registry import MODELS, check_kwargs

    options = dict(options or {})
    if not is_user_model(name):
        check_kwargs(MODELS.get(name), options, f"model {name!r}")
        return
    factory = load_factory(name)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        _refuse_unknown(name, params, options)


def _refuse_unknown(spec: str, params: Mapping[str, inspect.Parameter], options: Mapping[str, Any]) -> None:
    unknown = sorted(k for k in options if k not in params)
    if unknown:
        accepted = [n for n in params if n not in PASSED]
        raise ConfigError(f"model {spec!r} has no option(s) {', '.join(unknown)}; "
                          f"valid options: {', '.join(accepted) or '(none)'}")
