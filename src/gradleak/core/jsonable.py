"""One conversion of results to JSON-ready values, used by run folders, stores and the CLI.

Example:
    >>> import math, torch
    >>> to_jsonable({"a": torch.tensor([1, 2]), 3: (math.inf, 0.5)})
    {'a': [1, 2], '3': [None, 0.5]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


def to_jsonable(value: Any) -> Any:
    """Tensors and arrays become lists, numpy scalars Python numbers, paths strings, NaN/inf ``None``;
    mapping keys become strings, tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return to_jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
