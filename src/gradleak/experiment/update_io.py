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

from gradleak.core.errors import DataError
from gradleak.core.types import ClientUpdate, LocalTraining


def save_update(update: ClientUpdate, path: str | Path) -> None:
    """Write ``update``'s tensors and settings to a safetensors file."""
    from safetensors.torch import save_file

    meta: dict[str, Any] = {"kind": update.kind, "num_examples": update.num_examples}
    if update.local_training is not None:
        meta["local_training"] = vars(update.local_training)
    save_file({k: v.detach().contiguous() for k, v in update.tensors.items()}, str(path),
              metadata={"gradleak": json.dumps(meta)})


def load_update(path: str | Path, *, kind: str | None = None, num_examples: int | None = None,
                local_training: LocalTraining | None = None) -> ClientUpdate:
    """Read an update; explicit arguments override the file's metadata.

    Raises:
        DataError: the file is missing or not a safetensors file, or settings are missing.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise DataError(f"update file {p} does not exist")
    try:
        tensors = load_file(str(p))
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("gradleak")
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"cannot read {p} as safetensors ({err}); save updates with "
                        "gradleak.experiment.update_io.save_update or safetensors.torch.save_file") from err
    meta = json.loads(raw) if raw else {}
    kind = kind or meta.get("kind", "gradients")
    n = num_examples or meta.get("num_examples")
    if n is None:
        raise DataError(f"{p} does not record num_examples; pass --num-examples")
    if local_training is None and "local_training" in meta:
        local_training = LocalTraining(**meta["local_training"])
    return ClientUpdate(kind, tensors, int(n), local_training)  # type: ignore[arg-type]
