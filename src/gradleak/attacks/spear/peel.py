"""Peeling: recovered samples are removed from the layer gradient, leaving a smaller problem.

Notation as in :mod:`~gradleak.attacks.spear.select`: ``∂L/∂W = L R``, ``G = ∂L/∂Z = L Q`` and
``X = Q⁻¹ R``. Write ``P = Q⁻¹`` (rows ``p_i``, so ``x_i = p_i R``). Row ``j`` of ``L`` is
``L_j = Σ_{i∈S_j} G_ji p_i`` over the samples ``S_j`` that switch neuron ``j`` on, and
``∂L/∂b_j = Σ_{i∈S_j} G_ji``. A neuron switched on by one sample only therefore gives that
sample exactly: ``p_u = L_j / ∂L/∂b_j`` (the row ratio of the issue-4 hybrid, in coordinates).

Once the directions ``q_k`` of a set ``K`` of samples are known, their columns
``Ĝ_K = L Q̂_K`` are known up to scale, and on the rows ``J`` whose active samples all lie in
``K`` the least-squares system ``L_J = Ĝ_{J,K} T``, ``∂L/∂b_J = Ĝ_{J,K} s`` gives
``T = diag(s) P_K`` and the scales ``s`` exactly. The residual rows ``ρ_j = L_j − Ĝ_{j,K} T``,
``ρb_j = ∂L/∂b_j − Ĝ_{j,K} s`` are the gradient of the samples not yet found; a neuron whose
only *unknown* active sample is ``u`` now reads ``p_u = ρ_j / ρb_j`` exactly, although ``u`` shared
it with known samples. Every such proposal passes the same kernel test as any other (its
predicted zero set must have a clean one-dimensional kernel in ``L``), so a wrong proposal costs
time, never exactness. Recovering a sample thus makes more neurons single-sample — a cascade
like the peeling decoder of an erasure code. Where it stalls, the rest is the rank-``b − |K|``
problem ``L V`` with ``V`` spanning the directions orthogonal to every ``p_k``
(:func:`reduced_basis`). This is gradleak's extension; the paper samples rows only.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> W = torch.randn(300, 12, generator=g, dtype=torch.float64)
    >>> bias = torch.randn(300, generator=g, dtype=torch.float64) - 1.5   # sparse activations
    >>> X = torch.randn(5, 12, generator=g, dtype=torch.float64)
    >>> G = torch.randn(300, 5, generator=g, dtype=torch.float64) * ((X @ W.T + bias) > 0).T
    >>> U, S, Vh = torch.linalg.svd(G @ X, full_matrices=False)
    >>> L, R = U[:, :5], S[:5, None] * Vh[:5]
    >>> from gradleak.attacks.spear.sampling import Tolerances
    >>> out = peel(L, R, G.sum(1), W, bias, L.norm(dim=1) > 1e-9, Tolerances(zero=1e-9, null=1e-14))
    >>> len(out.q)
    5
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from gradleak.attacks.spear.budget import Deadline, spent
from gradleak.attacks.spear.sampling import Tolerances, null_directions, predicted_masks, zero_masks

# A zero set predicted from an input is not chosen by its kernel, so only rows that are exactly
# essential (leverage 1, a set of rank b − 1 by accident) are refused; the sampling test's 0.95
# would refuse true zero sets of narrow layers (measured: up to 0.999 at m = 200, b = 64) and
# most true partial sets (the most negative share: median 0.92 at 70 %, 0.97 at 45 %). A kernel
# owed to the chosen rows is caught instead by how few zeros it has outside them.
INPUT_LEVERAGE = 1 - 1e-6


@dataclass
class Peeled:
    """The peeled samples.

    Attributes:
        q: unit directions ``(k, b)`` (rows) of the samples found.
        t: ``diag(s) P_K`` ``(k, b)`` for the peeled ones (``k' ≤ k`` rows: see ``peeled``).
        s: their scales ``(k',)``.
        peeled: how many of ``q`` (the first ones) have exact duals and were removed.
        inside: rows ``(m,)`` whose active samples are all peeled.
        rounds, tested: peeling rounds and proposals tested.
    """

    q: torch.Tensor
    t: torch.Tensor
    s: torch.Tensor
    peeled: int = 0
    inside: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
    rounds: int = 0
    tested: int = 0


def solve_duals(L: torch.Tensor, grad_bias: torch.Tensor, q: torch.Tensor, rows: torch.Tensor,
                found: torch.Tensor | None = None, which: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``T = diag(s) P_K`` and ``s`` for the directions ``q`` (rows) of the samples ``K``.

    Two sets of linear equations, solved together by least squares: the ``rows`` whose active
    samples all lie in ``K`` (``L_J = Ĝ_{J,K} T``), and, since ``P Q̂ diag(s) = I``, one per known
    direction ``q̂_i`` (``found``, rows; ``which[a]`` is the row of ``found`` that ``q[a]`` is):
    ``T_a · q̂_i = [i = which[a]]``. The second set is exact, so errors of a row that only
    *looked* single-sample are corrected wherever the other samples' directions are known. The
    scales follow from ``Q̂ s = Lᵀ ∂L/∂b``: ``s = T Lᵀ ∂L/∂b``. A Sylvester equation
    ``A T + T B = C``, solved in the eigenbases of ``A = Ĝ_Jᵀ Ĝ_J`` and ``B = Q̂_Fᵀ Q̂_F``.
    """
    ghat = L[rows] @ q.T
    if found is None or which is None:
        found, which = q, torch.arange(len(q))
    E = torch.zeros(len(q), len(found), dtype=L.dtype)
    E[torch.arange(len(q)), which] = 1.0
    a, U = torch.linalg.eigh(ghat.T @ ghat)
    c, V = torch.linalg.eigh(found.T @ found)
    C = ghat.T @ L[rows] + E @ found
    denom = a[:, None] + c[None, :]
    t = U @ ((U.T @ C @ V) / denom.clamp_min(1e-12 * float(denom.max()))) @ V.T
    return t, t @ (L.T @ grad_bias)


def residuals(L: torch.Tensor, grad_bias: torch.Tensor, q: torch.Tensor, t: torch.Tensor,
              s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient rows of the samples not in ``K``: ``ρ = L − Ĝ_K T`` and ``ρb = ∂L/∂b − Ĝ_K s``."""
    ghat = L @ q.T
    return L - ghat @ t, grad_bias - ghat @ s


def reduced_basis(t: torch.Tensor, b: int) -> torch.Tensor:
    """Orthonormal ``(b, b − k)`` basis of the directions orthogonal to every ``p_k`` (rows of ``t``)."""
    if len(t) == 0:
        return torch.eye(b, dtype=torch.float64)
    vh = torch.linalg.svd(t, full_matrices=True).Vh
    return vh[len(t):].T


def kernel_proposals(L: torch.Tensor, z_hat: torch.Tensor, alive: torch.Tensor, tol: Tolerances,
                     gen: torch.Generator, deadline: Deadline | None = None,
                     fracs: tuple[float, ...] = (1.0, 0.7),
                     chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact directions for approximate pre-activations ``z_hat`` ``(k, m)`` of proposed inputs.

    A cheap screen first: ``r + 16`` rows drawn at random from the predicted zero set must
    already have a (near) kernel. (The *most negative* rows would not do: for a mixture of
    samples they lie in the samples' common zero set, which has a kernel too.) The survivors
    get the full test of :func:`null_directions` on their predicted zero set, then on its most
    negative ``frac`` share.

    Returns:
        unit directions ``(k', r)``, the index of the proposal each came from ``(k',)``, and
        whether it passed on the whole predicted set (``frac = 1``) ``(k',)``.
    """
    m, r = L.shape
    chunk = chunk or max(8, min(512, (1 << 22) // (m * r)))
    k0 = min(r + 16, m)
    live = int(alive.sum())
    loose = replace(tol, leverage=max(tol.leverage, INPUT_LEVERAGE))
    out_q, out_i, out_full = [], [], []
    for start in range(0, z_hat.shape[0], chunk):
        if spent(deadline):
            break
        z = z_hat[start:start + chunk]
        todo = torch.arange(len(z))
        for frac in fracs:
            if len(todo) == 0:
                break
            masks = predicted_masks(z[todo], alive, frac)
            keys = torch.rand(masks.shape, generator=gen, dtype=L.dtype).masked_fill(~masks, -1.0)
            pick = keys.topk(k0, dim=1)
            sub = L[pick.indices]
            ev = torch.linalg.eigvalsh(sub.mT @ sub)
            screen = (pick.values[:, -1] >= 0) & (ev[:, 0] <= 100 * tol.null * ev[:, -1])
            q, ok = null_directions(L, masks[screen], loose)
            zeros = zero_masks(q @ L.T, alive, tol.zero).sum(1)
            # a true direction is zero on its whole zero set, of which the rows used are the
            # share `frac` (measured zeros/used: 1.39–1.47 at 0.7, 2.13–2.23 at 0.45); a kernel
            # owed to the chosen rows alone is zero on hardly more than them
            need = 0.9 if frac >= 1 else 1 + 0.7 * (1 / frac - 1)
            ok &= zeros >= masks[screen].sum(1) * need
            ok &= zeros >= tol.min_zeros(live, r)
            hit = screen.nonzero().flatten()[ok]
            out_q.append(q[ok])
            out_i.append(todo[hit] + start)
            out_full.append(torch.full((len(hit),), frac >= 1))
            left = torch.ones(len(todo), dtype=torch.bool)
            left[hit] = False
            todo = todo[left]
    if not out_q:
        return L.new_zeros(0, r), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
    return torch.cat(out_q), torch.cat(out_i), torch.cat(out_full)


def distinct_rows(v: torch.Tensor, dedup: float) -> torch.Tensor:
    """Indices of one representative per group of parallel rows of ``v`` (up to sign)."""
    if len(v) == 0:
        return torch.zeros(0, dtype=torch.long)
    u = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    same = (u @ u.T).abs() > 1 - dedup
    first = same.int().argmax(1)                      # lowest index parallel to each row
    return (first == torch.arange(len(v))).nonzero().flatten()


def peel(L: torch.Tensor, R: torch.Tensor, grad_bias: torch.Tensor, weight: torch.Tensor,
         bias: torch.Tensor, alive: torch.Tensor, tol: Tolerances, gen: torch.Generator | None = None,
         deadline: Deadline | None = None, inside_tol: float | None = None,
         fracs: tuple[float, ...] = (1.0, 0.7, 0.45),
         check: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Peeled:
    """Recover samples from single-sample neurons, peel them off and repeat until it stalls.

    Args:
        L, R: the rank-``b`` factors of the layer's weight gradient.
        grad_bias: the layer's bias gradient.
        weight, bias: the layer's parameters (to predict zero sets of proposed inputs).
        alive: rows not identically zero.
        tol: numerical thresholds.
        gen: seeds the screening subsets.
        deadline: the search budget.
        inside_tol: a row is explained by the peeled samples when its residual is below this
            share of its norm (default: ``max(1e-6, 100 · tol.zero)``).
        fracs: shares of each predicted zero set tried (its most negative part). ``1`` reads a
            single-sample row exactly; when that stalls, smaller shares also accept a row that
            another unknown sample contaminates a little. Such a sample's direction is exact
            (kernel-tested), its dual only approximate: it sharpens later proposals (rows it
            touches are proposed from a residual that subtracts it too) but is not peeled.
        check: which directions (rows) are plausible (:mod:`~gradleak.attacks.spear.structure`).
    """
    return _Peeler(L, R, grad_bias, weight, bias, alive, tol, gen, deadline, inside_tol, fracs, check).run()


class _Peeler:
    """The state of one peeling run (see :func:`peel`)."""

    def __init__(self, L: torch.Tensor, R: torch.Tensor, grad_bias: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor, alive: torch.Tensor, tol: Tolerances, gen: torch.Generator | None,
                 deadline: Deadline | None, inside_tol: float | None, fracs: tuple[float, ...],
                 check: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.check = check
        self.L, self.gb, self.alive, self.tol, self.deadline, self.fracs = L, grad_bias, alive, tol, deadline, fracs
        self.bias, self.wr = bias, weight @ R.T                          # z(p) = wr p + bias
        self.gen = gen if gen is not None else torch.Generator().manual_seed(0)
        self.inside_tol = inside_tol if inside_tol is not None else min(0.1, max(1e-6, 100 * tol.zero))
        m, b = L.shape
        self.norms = L.norm(dim=1)
        self.q = L.new_zeros(0, b)
        self.exact: list[bool] = []           # its dual was read exactly (passed on the whole set)
        self.gen_rows: list[int] = []
        self.guess: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # approximate (t, s)
        self.out = Peeled(self.q, L.new_zeros(0, b), L.new_zeros(0), 0, torch.zeros(m, dtype=torch.bool))
        self.rho, self.rhob = L.clone(), grad_bias.clone()
        self.rho_g, self.rhob_g = self.rho, self.rhob
        self.touched = torch.zeros(m, dtype=torch.bool)        # rows an approximate dual is active on

    def run(self) -> Peeled:
        fresh = self.alive.clone()
        b = self.L.shape[1]
        while len(self.q) < b and fresh.any() and not spent(self.deadline):
            self.out.rounds += 1
            rows, z, may = self._proposals(fresh)
            added: list[int] = []
            for tier in (self.fracs[:1], self.fracs[1:]):     # the rest only when exact reads stall
                if tier and not added and not spent(self.deadline):
                    added = self._take(rows, z, may, tier)
            if not added:
                break
            fresh = self._update(added)
        self.out.q = self.q
        return _order_peeled(self.out, self.exact)

    def _proposals(self, fresh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows to read, their predicted pre-activations, and whether each may read exactly."""
        scale = self.gb.abs().max().clamp_min(1e-300)
        base = fresh & ~self.out.inside & (self.rhob.abs() > 1e-9 * scale)
        more = fresh & ~self.out.inside & self.touched & (self.rhob_g.abs() > 1e-9 * scale)
        rows = torch.cat([base.nonzero().flatten(), more.nonzero().flatten()])
        p = torch.cat([self.rho[base] / self.rhob[base, None], self.rho_g[more] / self.rhob_g[more, None]])
        may = torch.arange(len(rows)) < int(base.sum())      # from the exact residual
        if len(self.q) and not may.all():
            # an unknown sample's dual is orthogonal to every known direction: remove the part
            # of an approximate proposal that is not (exact proposals already are)
            basis = torch.linalg.qr(self.q.T).Q
            p[~may] = p[~may] - (p[~may] @ basis) @ basis.T
        keep = distinct_rows(p, 1e-9)
        rows, p, may = rows[keep], p[keep], may[keep]
        z = p @ self.wr.T + self.bias[None]
        own = z[torch.arange(len(rows)), rows] > 0                     # its own neuron must fire
        self.out.tested += int(own.sum())
        return rows[own], z[own], may[own]

    def _take(self, rows: torch.Tensor, z: torch.Tensor, may: torch.Tensor,
              fracs: tuple[float, ...]) -> list[int]:
        """Kernel-test the proposals; add new directions (and exact reads of known ones)."""
        new, idx, full = kernel_proposals(self.L, z, self.alive, self.tol, self.gen, self.deadline, fracs)
        new = new / new.norm(dim=1, keepdim=True)
        if self.check is not None and len(new):
            ok = self.check(new)
            new, idx, full = new[ok], idx[ok], full[ok]
        full = full & may[idx]
        added: list[int] = []
        for i in range(len(new)):
            cos = (self.q @ new[i]).abs() if len(self.q) else new.new_zeros(0)
            j = int(cos.argmax()) if len(cos) else -1
            row = int(rows[idx[i]])
            if j >= 0 and cos[j] > 1 - self.tol.dedup:
                if full[i] and not self.exact[j]:                      # now read exactly
                    self.exact[j], self.gen_rows[j] = True, row
                    self.guess.pop(j, None)
                    added.append(j)
                continue
            self.q = torch.cat([self.q, new[i:i + 1]])
            self.exact.append(bool(full[i]))
            self.gen_rows.append(row)
            added.append(len(self.q) - 1)
            at = float(self.L[row] @ new[i])
            if not full[i] and abs(at) > 1e-9 * float(self.norms[row]):    # dominated mixture
                rho, rhob = (self.rho, self.rhob) if may[idx[i]] else (self.rho_g, self.rhob_g)
                self.guess[len(self.q) - 1] = (rho[row] / at, rhob[row] / at)
        return added

    def _update(self, added: list[int]) -> torch.Tensor:
        """Refit the exact duals, recompute both residuals; returns the rows that changed."""
        L, tol = self.L, self.tol
        peel_q, t, s, inside = _fit(L, self.gb, self.q, self.exact, self.gen_rows, self.alive,
                                    self.norms, self.inside_tol)
        self.rho, self.rhob = residuals(L, self.gb, peel_q, t, s)
        self.rho_g, self.rhob_g = self.rho, self.rhob
        self.touched = torch.zeros(L.shape[0], dtype=torch.bool)
        if self.guess:               # approximate duals sharpen the proposals, never the answer
            keys = sorted(self.guess)
            ghat = L @ self.q[keys].T
            self.rho_g = self.rho - ghat @ torch.stack([self.guess[k][0] for k in keys])
            self.rhob_g = self.rhob - ghat @ torch.stack([self.guess[k][1] for k in keys])
            self.touched = (ghat.abs() > tol.zero * ghat.abs().amax(0)).any(1)
        cols = (L @ self.q[added].T).abs()
        self.out = Peeled(self.q, t, s, len(peel_q), inside, self.out.rounds, self.out.tested)
        return self.alive & ~inside & (cols > tol.zero * cols.amax(0)).any(1)


def _fit(L: torch.Tensor, grad_bias: torch.Tensor, q: torch.Tensor, exact: list[bool],
         gen_rows: list[int], alive: torch.Tensor, norms: torch.Tensor,
         inside_tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Duals of the samples whose proposal passed on its whole predicted zero set, and the rows
    they explain: starts from their generating rows, adds every row the fit explains, refits
    (with every found direction's constraint, :func:`solve_duals`)."""
    use = torch.tensor(exact, dtype=torch.bool)
    peel_q, which = q[use], use.nonzero().flatten()
    inside = torch.zeros(len(norms), dtype=torch.bool)
    if len(peel_q) == 0:
        return peel_q, L.new_zeros(0, L.shape[1]), L.new_zeros(0), inside
    base = torch.tensor(gen_rows, dtype=torch.long)[use]
    rows = inside.clone()
    rows[base] = True
    top = grad_bias.abs().max()
    for _ in range(5):
        t, s = solve_duals(L, grad_bias, peel_q, rows, q, which)
        rho, rhob = residuals(L, grad_bias, peel_q, t, s)
        inside = alive & (rho.norm(dim=1) <= inside_tol * norms) & (rhob.abs() <= inside_tol * top)
        nxt = inside.clone()
        nxt[base] = True
        if torch.equal(nxt, rows):
            break
        rows = nxt
    return peel_q, t, s, inside


def _order_peeled(out: Peeled, exact: list[bool]) -> Peeled:
    """Put the peeled directions (exact duals) first, matching ``t`` and ``s``."""
    use = torch.tensor(exact, dtype=torch.bool)
    out.q = torch.cat([out.q[use], out.q[~use]]) if len(out.q) else out.q
    out.peeled = int(use.sum())
    return out
