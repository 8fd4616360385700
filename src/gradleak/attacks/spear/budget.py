"""A hard wall-clock budget for SPEAR, checked inside every inner loop.

Every loop of the search (batched QR sampling, kernel tests of proposal chunks, line scans,
swaps of the selection, peeling rounds) asks :meth:`Deadline.spent` before each chunk of work
and stops with what it has. A chunk is sized to take well under a second, so a run ends within
a few chunks of its budget; ``reserve`` keeps a share of the budget for the steps after the
search (re-solving each direction, assembling the batch, verifying it).

Example:
    >>> d = Deadline(None)
    >>> d.spent(), d.left() == float("inf")
    (False, True)
    >>> d = Deadline(0.0)
    >>> d.spent()
    True
"""

from __future__ import annotations

import math
import time


class Deadline:
    """The search's wall-clock budget.

    Args:
        seconds: the whole budget (``None``: unlimited).
        reserve: share of the budget kept for the finishing steps (the search stops at
            ``(1 − reserve) · seconds``), at most ``max_reserve`` seconds.
        max_reserve: cap on the reserved seconds.
        start: when the budget started (``time.perf_counter()``; default now).
    """

    def __init__(self, seconds: float | None, reserve: float = 0.03, max_reserve: float = 10.0,
                 start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.seconds = math.inf if seconds is None else float(seconds)
        keep = min(max_reserve, reserve * self.seconds) if math.isfinite(self.seconds) else 0.0
        self.search_end = self.start + self.seconds - keep
        self.checks = 0

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds left for the search (``inf`` when unlimited)."""
        return self.search_end - time.perf_counter()

    def hard_left(self) -> float:
        """Seconds left of the whole budget, reserve included (``inf`` when unlimited)."""
        return self.start + self.seconds - time.perf_counter()

    def part(self, share: float) -> Deadline:
        """A deadline for a sub-step: ``share`` of what is left of the search (never later)."""
        out = Deadline(None)
        out.start, out.seconds = self.start, self.seconds
        out.search_end = min(self.search_end, time.perf_counter() + share * max(0.0, self.left()))
        return out

    def spent(self) -> bool:
        """Whether the search must stop now."""
        self.checks += 1
        return time.perf_counter() >= self.search_end


def spent(deadline: Deadline | None) -> bool:
    """``deadline.spent()``, or ``False`` without a deadline."""
    return deadline is not None and deadline.spent()
