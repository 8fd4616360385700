"""Content hashes of images: which images two sets share, and a fingerprint of a whole set.

An image is hashed after quantising its pixels to 8 bits (``round(255·x)``), so the same picture
loaded twice, or through a different float path, gets the same hash; two images that differ by
less than half a grey level count as the same image (the conservative side for a leakage check).

Example:
    >>> import torch
    >>> x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> h = image_hashes(x)
    >>> len(h), len(set(h)), image_hashes(x[1:2])[0] == h[1]
    (3, 3, True)
    >>> fingerprint(h) == fingerprint(reversed(h))  # order does not matter
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def image_hashes(inputs: torch.Tensor) -> list[str]:
    """One 32-hex-digit hash per image of ``inputs`` ``(N, C, H, W)`` in ``[0, 1]``."""
    q = (inputs.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
    shape = "x".join(map(str, q.shape[1:])).encode()
    out = []
    for image in q:
        h = hashlib.blake2b(shape, digest_size=16)
        h.update(image.numpy().tobytes())
        out.append(h.hexdigest())
    return out


def fingerprint(hashes: Iterable[str]) -> str:
    """A 32-hex-digit fingerprint of a *set* of image hashes (order and repeats ignored)."""
    h = hashlib.blake2b(digest_size=16)
    for value in sorted(set(hashes)):
        h.update(value.encode())
    return h.hexdigest()
