"""TuRBO-1: trust-region Bayesian optimisation (Eriksson et al., NeurIPS 2019, arXiv 1910.01739).

GGL's ``bo`` optimiser. Plain GP-BO in 128 dimensions is slow and explores badly (a global
acquisition over a huge box); TuRBO keeps one local trust region around the best point, fits an
ARD Gaussian process only to the data of the current region, proposes a batch by Thompson
sampling on perturbed candidates, and grows/shrinks the region on success/failure, restarting
from a fresh Latin hypercube when it collapses. The GP here is a small exact one in float64
(ARD RBF kernel, hyper-parameters by 50 Adam steps on the marginal likelihood after each restart
and 10 warm-started steps per batch, to keep the cost per batch low on a CPU; TuRBO's bounds),
so it needs no extra dependency.

Example:
    >>> import torch
    >>> f = lambda x: ((x - 0.3) ** 2).sum(1)
    >>> x, fx, hist = turbo_minimise(f, 2, lb=-1.0, ub=1.0, max_evals=60, n_init=10, batch_size=5, seed=0)
    >>> bool(fx < 0.01), len(hist)
    (True, 60)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gradleak.core.types import Progress

Objective = Callable[[torch.Tensor], torch.Tensor]


def latin_hypercube(n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` points in ``[0, 1]^dim``, one per stratum in every coordinate."""
    perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(dim)], dim=1).double()
    return (perms + torch.rand(n, dim, generator=gen, dtype=torch.float64)) / n


def _kernel(a: torch.Tensor, b: torch.Tensor, ls: torch.Tensor, os: torch.Tensor) -> torch.Tensor:
    return os * torch.exp(-0.5 * torch.cdist(a / ls, b / ls).pow(2))


class _GP:
    """Exact GP with an ARD RBF kernel on standardised targets (TuRBO's hyper-parameter bounds)."""

    BOUNDS = {"ls": (0.005, 2.0), "os": (0.05, 20.0), "noise": (5e-4, 0.2)}

    def __init__(self, x: torch.Tensor, y: torch.Tensor, steps: int = 50,
                 warm: dict[str, torch.Tensor] | None = None) -> None:
        self.x, self.y = x, y
        raw = {"ls": torch.full((x.shape[1],), math.log(0.5)), "os": torch.tensor(0.0),
               "noise": torch.tensor(math.log(5e-3))} if warm is None else {k: v.log() for k, v in warm.items()}
        raw = {k: v.detach().double().clone().requires_grad_(True) for k, v in raw.items()}
        opt = torch.optim.Adam(list(raw.values()), lr=0.1)
        for _ in range(steps):
            opt.zero_grad()
            (-self._mll(**self._constrain(raw))).backward()
            opt.step()
        with torch.no_grad():
            self.p = self._constrain(raw)
            self.chol = self._chol(self.p)
            self.alpha = torch.cholesky_solve(self.y[:, None], self.chol)

    def _constrain(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.exp().clamp(*self.BOUNDS[k]) for k, v in raw.items()}

    def _chol(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        k = _kernel(self.x, self.x, p["ls"], p["os"]) + (p["noise"] + 1e-6) * torch.eye(len(self.x)).double()
        return torch.linalg.cholesky(k)

    def _mll(self, ls: torch.Tensor, os: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        chol = self._chol({"ls": ls, "os": os, "noise": noise})
        alpha = torch.cholesky_solve(self.y[:, None], chol)
        return -0.5 * (self.y[:, None] * alpha).sum() - chol.diagonal().log().sum()

    def sample(self, c: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` joint posterior samples at candidates ``c``, shape ``(len(c), n)``."""
        kxc = _kernel(self.x, c, self.p["ls"], self.p["os"])
        mean = (kxc * self.alpha).sum(0)
        v = torch.linalg.solve_triangular(self.chol, kxc, upper=False)
        cov = _kernel(c, c, self.p["ls"], self.p["os"]) - v.T @ v
        eye = torch.eye(len(c), dtype=torch.float64)
        for jitter in (1e-6, 1e-4, 1e-2):
            chol, info = torch.linalg.cholesky_ex(cov + jitter * self.p["os"] * eye)
            if int(info) == 0:
                break
        else:
            chol = torch.diag(cov.diagonal().clamp_min(0).sqrt())
        return mean[:, None] + chol @ torch.randn(len(c), n, generator=gen, dtype=torch.float64)


def turbo_minimise(
    fn: Objective, dim: int, *, lb: float, ub: float, max_evals: int, n_init: int = 256,
    batch_size: int = 10, seed: int = 0, n_candidates: int = 1000, progress: Progress | None = None,
) -> tuple[torch.Tensor, float, list[float]]:
    """Minimise ``fn((n, dim) float32) -> (n,)`` over the box ``[lb, ub]^dim`` with TuRBO-1.

    Returns:
        the best point ``(dim,)``, its value, and the best value after every evaluation.
    """
    gen = torch.Generator().manual_seed(seed)
    n_init = max(2, min(n_init, max_evals))
    fail_tol = math.ceil(max(4.0 / batch_size, dim / batch_size))
    best_x, best_f, history = torch.zeros(dim), math.inf, []

    def evaluate(u: torch.Tensor) -> torch.Tensor:
        nonlocal best_x, best_f
        values = fn((lb + (ub - lb) * u).float()).detach().double()
        values = torch.nan_to_num(values, nan=math.inf)
        for i, v in enumerate(values.tolist()):
            if v < best_f:
                best_f, best_x = v, (lb + (ub - lb) * u[i]).float()
            history.append(best_f)
        if progress is not None:
            progress(min(len(history), max_evals), max_evals, best_f)
        return values

    while len(history) < max_evals:
        x = latin_hypercube(min(n_init, max_evals - len(history)), dim, gen)
        fx = evaluate(x)
        length, succ, fail, hyper = 0.8, 0, 0, None
        while len(history) < max_evals and length >= 0.5 ** 7:
            finite = torch.isfinite(fx)
            y = fx[finite]
            y = (y - y.mean()) / y.std().clamp_min(1e-9) if len(y) > 1 else y * 0
            gp = _GP(x[finite], y, steps=50 if hyper is None else 10, warm=hyper)
            hyper = gp.p
            centre = x[finite][y.argmin()]
            w = gp.p["ls"] / gp.p["ls"].mean()
            w = w / w.log().mean().exp()
            lo, hi = (centre - w * length / 2).clamp(0, 1), (centre + w * length / 2).clamp(0, 1)
            pert = lo + (hi - lo) * torch.rand(n_candidates, dim, generator=gen, dtype=torch.float64)
            mask = torch.rand(n_candidates, dim, generator=gen) <= min(20.0 / dim, 1.0)
            mask[torch.arange(n_candidates), torch.randint(dim, (n_candidates,), generator=gen)] = True
            cand = torch.where(mask, pert, centre.expand(n_candidates, dim))
            q = min(batch_size, max_evals - len(history))
            samples = gp.sample(cand, q, gen)
            picks: list[int] = []
            for j in range(q):
                order = samples[:, j].argsort()
                picks.append(int(next(i for i in order.tolist() if i not in picks)))
            x_new = cand[picks]
            f_new = evaluate(x_new)
            if f_new.min() < fx.min() - 1e-3 * fx.min().abs():
                succ, fail = succ + 1, 0
            else:
                succ, fail = 0, fail + 1
            if succ == 3:
                length, succ = min(2 * length, 1.6), 0
            elif fail == fail_tol:
                length, fail = length / 2, 0
            x, fx = torch.cat([x, x_new]), torch.cat([fx, f_new])
    return best_x, best_f, history[:max_evals]
