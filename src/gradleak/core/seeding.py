"""Seeded random generators: every random choice of an attack flows from its ``seed``.

Example:
    >>> import torch
    >>> a = torch.rand(2, generator=attack_generator(3))
    >>> bool((a == torch.rand(2, generator=attack_generator(3))).all())
    True
"""

from __future__ import annotations

import torch


def attack_generator(seed: int) -> torch.Generator:
    """The attack's own seeded random generator (the global RNG is never used)."""
    return torch.Generator().manual_seed(int(seed) + 7919)
