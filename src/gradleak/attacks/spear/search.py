"""SPEAR's direction search on one problem (the whole layer, or what peeling left of it).

The loop: proposals from predicted zero sets (row ratios, line scans, exact completion of the
last one or two directions), then batches of sampled row subsets (uniform, or steered toward
rows that are usually off), and after every growth of the pool a selection of ``b`` directions
by the sparsity-match score λ. It stops when the selection *verifies*
(:func:`~gradleak.attacks.spear.verify.verify`: the batch reproduces the gradient under its own
ReLU pattern), when the budget is spent, or after ``max_samples`` draws.

Example:
    >>> import torch
    >>> from gradleak.attacks.spear.sampling import Tolerances
    >>> g = torch.Generator().manual_seed(0)
    >>> W, bias = torch.randn(60, 8, generator=g, dtype=torch.float64), torch.zeros(60, dtype=torch.float64)
    >>> X = torch.randn(3, 8, generator=g, dtype=torch.float64)
    >>> G = torch.randn(60, 3, generator=g, dtype=torch.float64) * ((X @ W.T + bias) > 0).T
    >>> U, S, Vh = torch.linalg.svd(G @ X, full_matrices=False)
    >>> prob = Problem(U[:, :3], S[:3, None] * Vh[:3], G @ X, G.sum(1), W, bias,
    ...                torch.ones(60, dtype=torch.bool), Tolerances(zero=1e-9, null=1e-14))
    >>> q_hat, pool, done = search(prob, "sample", g)
    >>> done
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gradleak.attacks.spear.budget import Deadline, spent
from gradleak.attacks.spear.hybrid import (
    directions_from_inputs,
    line_scan_directions,
    row_logits,
    row_pairs,
    row_ratio_inputs,
)
from gradleak.attacks.spear.masks import structured_chunk, structured_directions
from gradleak.attacks.spear.sampling import Candidates, Tolerances, sample_directions
from gradleak.attacks.spear.select import (
    agreement,
    assemble,
    complete_last,
    complete_pair,
    describe,
    independent,
    select,
)
from gradleak.attacks.spear.structure import OutputSpan
from gradleak.attacks.spear.verify import NOISE_LIMIT, Replay, Verdict, verify
from gradleak.core.types import Progress


@dataclass
class Problem:
    """One rank-``b`` problem: factors ``L`` ``(m, b)``, ``R`` ``(b, n)``, the gradients they
    factor (``gw`` ``(m, n)``, ``gb`` ``(m,)``), the layer (``W``, ``bias``), live rows, tolerances,
    the spectrum gap ``noise``, a FedAvg ``replay`` (see :func:`verify`), and for a problem left
    by peeling, ``lift`` (its directions → the whole layer's, verified there)."""

    L: torch.Tensor
    R: torch.Tensor
    gw: torch.Tensor
    gb: torch.Tensor
    W: torch.Tensor
    bias: torch.Tensor
    alive: torch.Tensor
    tol: Tolerances
    noise: float = 0.0
    replay: Replay | None = None
    tolerance: float | None = None
    lift: Callable[[torch.Tensor], torch.Tensor] | None = None
    parent: Problem | None = None
    span: OutputSpan | None = None
    limit: float = NOISE_LIMIT

    def plausible(self, q: torch.Tensor) -> torch.Tensor:
        """Which directions (rows) pass the next layer's test (:mod:`~gradleak.attacks.spear.structure`)."""
        return torch.ones(len(q), dtype=torch.bool) if self.span is None else self.span(q @ self.L.T)

    @property
    def b(self) -> int:
        """The rank (number of samples) of this problem."""
        return int(self.L.shape[1])

    def verdict(self, q_hat: torch.Tensor) -> Verdict:
        """:func:`~gradleak.attacks.spear.verify.verify` of directions ``q_hat`` (columns) on this
        problem's own gradient, with its noise, replay, tolerance and limit."""
        return verify(self.gw, self.gb, self.L, self.R, q_hat, self.W, self.bias, self.alive,
                      self.noise, self.replay, self.tolerance, self.limit)

    def verify(self, q_hat: torch.Tensor) -> bool:
        """Whether directions ``q_hat`` (columns) give a batch that reproduces the gradient."""
        if self.parent is not None and self.lift is not None:
            return self.parent.verify(self.lift(q_hat))
        return self.verdict(q_hat).complete


@dataclass
class SearchStats:
    """Counters of one search."""

    drawn: int = 0
    rounds: int = 0
    proposal_rounds: int = 0
    from_row_ratios: int = 0
    structured: int = 0
    selections: int = 0
    extra: dict = field(default_factory=dict)


def search(prob: Problem, method: str, gen: torch.Generator, deadline: Deadline | None = None,
           max_samples: int = 50_000_000, batch: int = 4096, pool: Candidates | None = None,
           row_ratios: bool = True, progress: Progress | None = None,
           stats: SearchStats | None = None) -> tuple[torch.Tensor | None, Candidates, bool]:
    """Search ``prob.b`` directions.

    Args:
        method: ``hybrid`` (proposals, steered sampling, completion) or ``sample`` (uniform).
        pool: directions found before (e.g. by peeling), to start from.
        row_ratios: propose from the gradient's row ratios first (hybrid).

    Returns:
        the best selection ``(b, b)`` (columns) or ``None``, the pool, and whether it verified.
    """
    b, tol = prob.b, prob.tol
    stats = stats if stats is not None else SearchStats()
    pool = pool if pool is not None else Candidates(b, tol.dedup)
    if prob.span is not None:
        pool.check = prob.plausible
    if b == 1:                                   # one sample: its direction is the whole space
        one = torch.ones(1, 1, dtype=torch.float64)
        return one, pool, prob.verify(one)
    if method == "hybrid" and row_ratios and not spent(deadline):
        ratios = row_ratio_inputs(prob.gw, prob.gb, prob.alive)
        stats.from_row_ratios = pool.add(*directions_from_inputs(
            ratios, prob.L, prob.W, prob.bias, prob.alive, tol, deadline=deadline))
    strengths = (0.0, 1.0, 2.0, 4.0) if method == "hybrid" else (0.0,)
    best: tuple[torch.Tensor | None, float] = (None, -1.0)
    selected_at, completed_at = -1, -1
    share = _Share() if method == "hybrid" and prob.span is not None else None
    while not spent(deadline):
        if share is not None and share.structured_next():   # alternating projection (masks.py)
            t0 = time.perf_counter()
            new = structured_directions(prob, gen, 4 * structured_chunk(prob), deadline=deadline,
                                        known=independent(pool, b) if len(pool) else None)
            found = pool.add(*describe(new, prob.L, prob.alive, tol))
            stats.structured += found
            share.record(True, time.perf_counter() - t0, found)
        if len(pool) >= b and selected_at != len(pool):
            selected_at = len(pool)
            stats.selections += 1
            q_hat, lam = select(pool, prob.L, prob.R, prob.gb, prob.W, prob.bias, prob.alive, tol,
                                deadline=deadline)
            if q_hat is not None and lam > best[1]:
                best = (q_hat, lam)
            if q_hat is not None and prob.verify(q_hat):
                return q_hat, pool, True
        if method == "hybrid" and (completed_at != len(pool) or stats.rounds % 6 == 5):
            completed_at = len(pool)
            if propose(prob, pool, gen, deadline):
                stats.proposal_rounds += 1
                continue
        if share is not None and share.structured_next():
            continue
        if stats.drawn >= max_samples or spent(deadline) or int(prob.alive.sum()) < b - 1:
            break                                 # (too few live rows to sample b − 1 of them)
        n = min(batch * 8, max_samples - stats.drawn)
        strength = strengths[stats.rounds % len(strengths)]
        logits = row_logits(pool, prob.L, prob.alive, strength) if strength > 0 else None
        t0 = time.perf_counter()
        found = pool.add(*sample_directions(prob.L, prob.alive, n, tol, gen, logits, batch, deadline))
        if share is not None:
            share.record(False, time.perf_counter() - t0, found)
        stats.drawn, stats.rounds = stats.drawn + n, stats.rounds + 1
        if progress is not None:
            progress(stats.drawn, max_samples, float(b - len(pool)))
    return best[0], pool, False


class _Share:
    """Splits the search's time between structured proposals and row sampling by their yield
    (new directions per second, with one found and one second as a prior), each getting at
    least a fifth."""

    def __init__(self) -> None:
        self.seconds, self.found = [1.0, 1.0], [1.0, 1.0]     # [sampling, structured]

    def record(self, structured: bool, seconds: float, found: int) -> None:
        self.seconds[structured] += seconds
        self.found[structured] += found

    def structured_next(self) -> bool:
        rates = [f / s for f, s in zip(self.found, self.seconds)]
        want = min(0.8, max(0.2, rates[1] / max(sum(rates), 1e-300)))
        return self.seconds[1] <= want * sum(self.seconds)


def propose(prob: Problem, pool: Candidates, gen: torch.Generator,
            deadline: Deadline | None = None) -> bool:
    """Hybrid proposals that use the directions found so far; True if any new one was found.

    Line scans through pairs of row ratios that share their known active sample, then (with
    one or two directions missing) the exact completion from the others.
    """
    b, L, tol = prob.b, prob.L, prob.tol
    start, end = row_pairs(pool, prob.gw, prob.gb, prob.alive, prob.W, prob.bias, gen,
                           limit=max(16, min(600, 200_000 // L.shape[0])))
    if len(start) and not spent(deadline):
        new = line_scan_directions(start, end, L, prob.W, prob.bias, prob.alive, tol, deadline=deadline)
        if len(new) and pool.add(*describe(new, L, prob.alive, tol)):
            return True
    found = independent(pool, b)
    if len(found) == b:                       # b directions that do not verify: distrust the worst
        X, G = assemble(L, prob.R, prob.gb, found.T)
        found = found[agreement(X, G, prob.W, prob.bias, prob.alive, tol.zero).argsort(descending=True)]
    for k, complete in ((b - 1, complete_last), (b - 2, complete_pair)):
        for frac in ((1.0, 0.8) if len(found) >= k >= 0 else ()):
            if spent(deadline):
                return False
            extra = {"deadline": deadline} if complete is complete_pair else {}
            extra["span_a"] = prob.span.A if prob.span is not None else None
            new = complete(found[:k], L, prob.R, prob.W, prob.bias, prob.alive, tol, frac, **extra)
            if len(new) and pool.add(*describe(new, L, prob.alive, tol)):
                return True
    return False
