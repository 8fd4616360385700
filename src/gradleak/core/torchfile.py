"""Reading a user's ``torch.save`` file safely, with one-line errors (checkpoints, generator weights).

``torch.load(weights_only=True)`` refuses any pickle that asks for code; its own messages run
over many lines and suggest ``weights_only=False``, which gradleak never uses. This module turns
every failure into one :class:`~gradleak.core.errors.DataError` line saying what the file is
and how to save a usable one.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "w.pt"
    >>> torch.save({"w": torch.ones(2)}, p)
    >>> sorted(load_weights_only(p, "checkpoint"))
    ['w']
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from gradleak.core.errors import DataError

SAVE_HINT = "save it with torch.save(model.state_dict(), path) or as safetensors"


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return (lines[0] if lines else type(err).__name__)[:200]


def check_file(path: str | Path, what: str, expected: str) -> Path:
    """``path`` as an existing regular file, or a :class:`DataError` naming what is there instead."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise DataError(f"{what} {p} is a folder; pass the {expected} file itself")
    if not p.exists():
        raise DataError(f"{what} {p} does not exist; pass the path of a {expected} file")
    if not p.is_file():
        raise DataError(f"{what} {p} is not a regular file; pass the path of a {expected} file")
    if p.stat().st_size == 0:
        raise DataError(f"{what} {p} is empty (0 bytes); {SAVE_HINT}")
    return p


def load_weights_only(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, every failure one :class:`DataError` line."""
    p = check_file(path, what, ".pt")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = torch_detail(err)
        if "global" in detail.lower():
            raise DataError(f"{what} {p} was refused: it is a pickle that asks for code ({detail}); gradleak "
                            f"loads only weights, never code — {SAVE_HINT}") from None
        raise DataError(f"{what} {p} is not a readable torch file of tensors ({detail}); {SAVE_HINT}") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, IndexError, KeyError, TypeError,
            UnicodeDecodeError, MemoryError, OverflowError) as err:
        raise DataError(f"{what} {p} is not a readable torch file ({torch_detail(err)}); {SAVE_HINT}") from None


def torch_detail(err: BaseException) -> str:
    """The informative line of a torch loading error (not its advice to use ``weights_only=False``)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    noise = ("Weights only load failed", "Please file an issue", "Check the documentation", "Re-running")
    useful = [ln for ln in lines if not ln.startswith(noise)]
    pick = next((ln for ln in useful if "Unsupported" in ln or "GLOBAL" in ln), useful[0] if useful else "")
    pick = pick.replace("WeightsUnpickler error:", "").strip()
    return (pick or type(err).__name__)[:200]
