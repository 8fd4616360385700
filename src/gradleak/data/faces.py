"""``faces``: the 200 grey 25×25 patches of ``skimage.data.lfw_subset`` (face / non-face).

The first 100 patches are faces from Labeled Faces in the Wild (label 1), the last 100 are
non-face patches (label 0). The data ships inside scikit-image; nothing downloads.

Example:
    >>> from gradleak.data import load_dataset
    >>> ds = load_dataset("faces")
    >>> ds.shape, ds.num_classes, len(ds), ds.labels[:100].unique().tolist()
    ((1, 25, 25), 2, 200, [1])
    >>> load_dataset("faces", size=32).shape
    (1, 32, 32)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gradleak.core.errors import ConfigError
from gradleak.data.base import Dataset, loader


@loader(shape=(1, 25, 25), classes=2)
def faces(size: int | None = None) -> Dataset:
    """200 grey 1×25×25 patches from skimage.data.lfw_subset: 100 faces (1), 100 non-faces (0).

    Args:
        size: resize the patches to ``size × size`` (bilinear, anti-aliased); ``None`` keeps 25.
    """
    from skimage.data import lfw_subset

    if size is not None and (not isinstance(size, int) or size < 4):
        raise ConfigError(f"faces size must be an integer >= 4 (or None for 25), got {size!r}")
    x = torch.as_tensor(np.asarray(lfw_subset(), dtype=np.float32))[:, None]
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    labels = torch.cat([torch.ones(100, dtype=torch.int64), torch.zeros(len(x) - 100, dtype=torch.int64)])
    return Dataset("faces", x.clamp(0, 1).contiguous(), labels, 2, "skimage.data.lfw_subset")
