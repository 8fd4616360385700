"""Run folders: ``config.json``, ``metrics.json``, ``reconstruction.png`` and optional tensors.

Checking, staging and marking run folders is :mod:`gradleak.experiment.outputs`; this module
holds what goes into them.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> write_json(d / "config.json", {"seed": 0}); (d / "config.json").exists()
    True
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gradleak.core.jsonable import to_jsonable
from gradleak.experiment.outputs import write_file

RUN_FILES = ("config.json", "metrics.json", "reconstruction.png", "tensors.safetensors")


def json_text(data: Any) -> str:
    """``data`` as indented JSON (tensors become lists, NaN/inf become null)."""
    return json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, to a temporary name renamed into place."""
    write_file(path, json_text(data))


def image_grid(rows: list[torch.Tensor], *, columns: int = 16, min_size: int = 56) -> Image.Image:
    """A grid of image rows (each ``(B, C, H, W)`` in [0, 1]); long batches wrap every ``columns``."""
    b, c, h, w = rows[0].shape
    scale = max(1, math.ceil(min_size / max(h, w)))
    cols = min(b, columns)
    blocks = math.ceil(b / cols)
    pad = 2
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = np.ones((blocks * (len(rows) * cell_h + pad), cols * cell_w + pad, 3))
    for k, batch in enumerate(rows):
        imgs = batch.detach().float().clamp(0, 1)
        imgs = imgs.repeat(1, 3, 1, 1) if c == 1 else imgs[:, :3]
        imgs = imgs.repeat_interleave(scale, 2).repeat_interleave(scale, 3).permute(0, 2, 3, 1).numpy()
        for i, img in enumerate(imgs):
            block, col = divmod(i, cols)
            top = block * (len(rows) * cell_h + pad) + k * cell_h + pad
            left = col * cell_w + pad
            canvas[top:top + h * scale, left:left + w * scale] = img
    return Image.fromarray((canvas * 255).round().astype(np.uint8))


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """Tensors as the bytes of a safetensors file (contiguous copies)."""
    from safetensors.torch import save

    return save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save tensors as safetensors, to a temporary name renamed into place."""
    write_file(path, tensor_bytes(tensors))
