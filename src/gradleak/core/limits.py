"""Limits that fail fast: sizes gradleak refuses before it spends minutes (or all memory) on them.

Every limit is a plain constant here, so the CLI, grid files and the API refuse the same things
with the same words. A refused value raises :class:`~gradleak.core.errors.LimitError` naming the
value, the limit and what to do instead.

Example:
    >>> check_seed(3)
    3
    >>> try:
    ...     check_seed(2**70)
    ... except LimitError as err:
    ...     print(str(err)[:43])
    seed must be an integer between 0 and 2**62
"""

from __future__ import annotations

import numbers
import os

from gradleak.core.errors import LimitError

MAX_SEED = 2**62
"""Seeds live in ``[0, 2**62]``: derived seeds (``seed + offset``) must still fit torch's 64 bits."""
MAX_EPOCHS = 1000
"""Training epochs (``--model-state trained:EPOCHS``, local epochs) beyond this are refused."""
MAX_STEPS = 10_000_000
"""Attack iterations and local SGD steps."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Height × width of one image, read from a file or asked of an attack (PIL's bomb limit is 89 M)."""
MAX_GRID_DEPTH = 8
"""Nesting of tables and lists in a grid file (the deepest real grid: presets.NAME.grid.defense chains, 6)."""
MAX_GRID_BYTES = 16 * 2**20
"""Size of a grid file's text."""
MAX_CHECKED_VALUES = 100
"""Values per grid list checked one by one when a grid is refused for its size anyway."""
MAX_WORKERS = 1024
"""Parallel sweep workers."""
MODEL_MEMORY_FACTOR = 6
"""A model's parameters are held about this many times at once (model, client copy, gradients,
update, trial gradients, optimiser state); a model whose parameters times this exceed the free
memory is refused before it is built."""


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int in ``[0, MAX_SEED]``; anything else raises :class:`LimitError`."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= MAX_SEED:
        raise LimitError(f"{what} must be an integer between 0 and 2**62, got {seed!r}; pick a smaller seed")
    return int(seed)


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (``MemAvailable``), or ``None`` when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def check_model_memory(numel: int, bytes_per_value: int, what: str) -> None:
    """Refuse a model of ``numel`` values that would not fit in the free memory.

    Example:
        >>> check_model_memory(1000, 4, "model 'mlp'")
    """
    need = numel * bytes_per_value * MODEL_MEMORY_FACTOR
    free = available_memory()
    if free is not None and need > free:
        raise LimitError(f"{what} has {numel:,} parameters ({numel * bytes_per_value / 2**30:.1f} GiB); "
                         f"an attack holds them about {MODEL_MEMORY_FACTOR} times (~{need / 2**30:.1f} GiB) but "
                         f"only {free / 2**30:.1f} GiB of memory is free; choose smaller widths or a smaller model")


def check_pixels(height: int, width: int, what: str) -> None:
    """Refuse an image larger than :data:`MAX_IMAGE_PIXELS` (a decompression bomb, or a typo)."""
    if height * width > MAX_IMAGE_PIXELS:
        raise LimitError(f"{what} is {width} × {height} = {height * width:,} pixels, more than the limit of "
                         f"{MAX_IMAGE_PIXELS:,} (4096 × 4096); resize it first")
