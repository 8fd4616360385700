"""Save and load client updates as safetensors, for attacking updates a user already has.

The file holds one tensor per model parameter (keys = ``model.named_parameters()`` names);
metadata records the kind, ``num_examples`` and local-training settings when present.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from gradleak.core.types import ClientUpdate
    >>> up = ClientUpdate.from_gradients({"w": torch.ones(2)}, num_examples=3)
    >>> path = Path(tempfile.mkdtemp()) / "u.safetensors"
    >>> save_update(up, path)
    >>> load_update(path).num_examples
    3
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gradleak.core.errors import DataError, GradleakError
from gradleak.core.types import ClientUpdate, LocalTraining
from gradleak.core.validate import int_problem
from gradleak.experiment.outputs import write_file

META_KEYS = ("kind", "num_examples", "local_training")


def save_update(update: ClientUpdate, path: str | Path) -> None:
    """Write ``update``'s tensors and settings to a safetensors file."""
    from safetensors.torch import save

    meta: dict[str, Any] = {"kind": update.kind, "num_examples": update.num_examples}
    if update.local_training is not None:
        meta["local_training"] = vars(update.local_training)
    write_file(path, save({k: v.detach().contiguous() for k, v in update.tensors.items()},
                          metadata={"gradleak": json.dumps(meta)}))


def load_update(path: str | Path, *, kind: str | None = None, num_examples: int | None = None,
                local_training: LocalTraining | None = None) -> ClientUpdate:
    """Read an update; explicit arguments override the file's metadata.

    Raises:
        DataError: the file is missing, a folder, not a safetensors file, or its metadata is malformed
            (not JSON, ``num_examples`` not a whole number, unknown ``local_training`` keys, ...).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path).expanduser()
    if p.is_dir():
        raise DataError(f"update file {p} is a folder; pass the .safetensors file of the update")
    if not p.is_file():
        raise DataError(f"update file {p} does not exist")
    try:
        tensors = load_file(str(p))
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("gradleak")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"cannot read {p} as safetensors ({str(err)[:200]}); save updates with "
                        "gradleak.experiment.update_io.save_update or safetensors.torch.save_file") from err
    meta = read_metadata(raw, p)
    kind = kind or meta.get("kind", "gradients")
    n = num_examples if num_examples is not None else meta.get("num_examples")
    if n is None:
        raise DataError(f"{p} does not record num_examples; pass --num-examples")
    if local_training is None and "local_training" in meta:
        local_training = _local_training(meta["local_training"], p)
    if kind == "weight_delta" and local_training is None:
        raise DataError(f"{p} holds a weight delta but does not record the local training the server chose; "
                        "pass --update-kind weight_delta with --local-lr, --local-epochs and --local-batch-size")
    return ClientUpdate(kind, tensors, n, local_training)  # type: ignore[arg-type]


def read_metadata(raw: str | None, path: Path) -> dict[str, Any]:
    """The ``gradleak`` metadata of an update file, checked: a JSON object with known keys and types."""
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError as err:
        raise DataError(f"{path}: its 'gradleak' metadata is not valid JSON ({err}); re-save the update with "
                        "save_update, or pass --update-kind and --num-examples") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: its 'gradleak' metadata must be a JSON object, got {type(meta).__name__}")
    problems = []
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(META_KEYS)})")
    if "kind" in meta and meta["kind"] not in ("gradients", "weight_delta"):
        problems.append(f"kind must be 'gradients' or 'weight_delta', got {meta['kind']!r}")
    if "num_examples" in meta and (problem := int_problem("num_examples", meta["num_examples"], low=1)):
        problems.append(problem)
    if problems:
        raise DataError(f"{path}: malformed 'gradleak' metadata: " + "; ".join(problems)
                        + "; fix the file or override with --update-kind / --num-examples")
    return meta


def _local_training(value: Any, path: Path) -> LocalTraining:
    fields = list(LocalTraining.__dataclass_fields__)
    if not isinstance(value, dict):
        raise DataError(f"{path}: metadata local_training must be an object with keys {', '.join(fields)}, "
                        f"got {type(value).__name__}; fix the file or pass --local-lr/--local-epochs")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise DataError(f"{path}: metadata local_training has unknown key(s) {', '.join(map(str, unknown))}; "
                        f"valid: {', '.join(fields)}")
    try:
        return LocalTraining(**value)
    except GradleakError as err:
        raise DataError(f"{path}: metadata local_training is invalid: {err}") from None
