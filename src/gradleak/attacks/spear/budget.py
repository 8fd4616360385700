"""A hard wall-clock budget for SPEAR, checked inside every inner loop.

Every loop of the search (batched QR sampling, kernel tests of proposal chunks, line scans,
swaps of the selection, peeling rounds) asks :meth:`Deadline.spent` before each chunk of work
and stops with what it has. A chunk is sized to take well under a second, so a run ends within
a few chunks of its budget; ``reserve`` keeps a share of the budget for the steps after the
search (re-solving each direction, assembling the batch, verifying it), and :meth:`Deadline.keep`
raises that to a measured estimate of what those steps cost (:mod:`~gradleak.attacks.spear.finish`).

Example:
    >>> d = Deadline(None)
    >>> d.spent(), d.left() == float("inf")
    (False, True)
    >>> d = Deadline(0.0)
    >>> d.spent()
    True
    >>> now = [0.0]
    >>> d = Deadline(15.0, start=0.0, clock=lambda: now[0])
    >>> d.keep(4.0)
    >>> now[0] = 10.9; d.spent()
    False
    >>> now[0] = 11.0; d.spent()
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Deadline:
    """The search's wall-clock budget.

    Args:
        seconds: the whole budget (``None``: unlimited).
        reserve: share of the budget kept for the finishing steps (the search stops at
            ``(1 − reserve) · seconds``), at most ``max_reserve`` seconds.
        max_reserve: cap on the reserved seconds.
        start: when the budget started (``clock()``; default now).
        clock: the clock (seconds; ``time.perf_counter``).
    """

    def __init__(self, seconds: float | None, reserve: float = 0.03, max_reserve: float = 10.0,
                 start: float | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.start = clock() if start is None else start
        self.seconds = math.inf if seconds is None else float(seconds)
        self.reserved = min(max_reserve, reserve * self.seconds) if math.isfinite(self.seconds) else 0.0
        self.search_end = self.start + self.seconds - self.reserved
        self.checks = 0

    def keep(self, seconds: float) -> None:
        """Keep at least ``seconds`` of the budget for the steps after the search (an estimate
        of their cost); never moves the search's end later."""
        if math.isfinite(self.seconds) and seconds > self.reserved:
            self.reserved = seconds
            self.search_end = min(self.search_end, self.start + self.seconds - seconds)

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self.clock() - self.start

    def left(self) -> float:
        """Seconds left for the search (``inf`` when unlimited)."""
        return self.search_end - self.clock()

    def hard_left(self) -> float:
        """Seconds left of the whole budget, reserve included (``inf`` when unlimited)."""
        return self.start + self.seconds - self.clock()

    def part(self, share: float) -> Deadline:
        """A deadline for a sub-step: ``share`` of what is left of the search (never later)."""
        out = Deadline(None, clock=self.clock)
        out.start, out.seconds, out.reserved = self.start, self.seconds, self.reserved
        out.search_end = min(self.search_end, self.clock() + share * max(0.0, self.left()))
        return out

    def spent(self) -> bool:
        """Whether the search must stop now."""
        self.checks += 1
        return self.clock() >= self.search_end


def spent(deadline: Deadline | None) -> bool:
    """``deadline.spent()``, or ``False`` without a deadline."""
    return deadline is not None and deadline.spent()
