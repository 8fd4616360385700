"""SPEAR: exact gradient inversion of batches (Dimitrov, Baader, Müller, Vechev; NeurIPS 2024; arXiv 2403.03945).

Threat model: honest-but-curious server with the model's weights and one FedSGD gradient (or
a FedAvg weight delta of SGD — momentum, Nesterov, weight decay, FedProx — less the drift the
client's optimiser gives the weights on its own, divided by ``−lr · T_eff``; Adam is refused).
Needs: a first weighted layer ``nn.Linear`` *with bias* followed by ``nn.ReLU``, preceded only by
``Normalize``/``Flatten``/``Identity``/``Dropout`` (inverted here); batch size ``b`` below the layer
width and the input dimension; no labels (reported as unknown, or restored by a label method).

The weight gradient ``∂L/∂W = (∂L/∂Z) X`` has rank ``b``; with its SVD ``L R`` there is an
invertible ``Q`` with ``∂L/∂Z = L Q`` and ``X = Q⁻¹ R``. Each column of ``∂L/∂Z`` vanishes where
that sample's ReLU is off, so ``b − 1`` rows of ``L`` inside one zero set have that column's
direction as their kernel. ``method="sample"`` is the paper: sample row subsets (batched QR in
float64), keep sparse directions, deduplicate, pick ``b`` greedily by the sparsity-match score λ,
and fix scale and sign with ``∂L/∂bias``. ``method="hybrid"`` (default) is gradleak's: it first
*peels* (:mod:`~gradleak.attacks.spear.peel`): samples read exactly from neurons that only they
switch on are removed from the gradient, which makes more neurons single-sample, until it
stalls; the rest (a smaller problem) gets proposals from predicted zero sets
(:mod:`~gradleak.attacks.spear.hybrid`), steered sampling and exact completion of the last one
or two directions (:mod:`~gradleak.attacks.spear.search`). Departures from the paper: the search
stops when the batch *verifies* (:mod:`~gradleak.attacks.spear.verify`: it reproduces ``∂L/∂W``
and ``∂L/∂b`` under its own ReLU pattern), not at a λ threshold; the budget is a hard wall-clock
limit (:mod:`~gradleak.attacks.spear.budget`); duplicated inputs are merged
(:mod:`~gradleak.attacks.spear.distinct`).

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0, widths=(100,))
    >>> x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    >>> update = fedsgd_update(model, x, torch.tensor([0, 1, 2, 3]))
    >>> rec = Spear(labels="none").run(model, update, shape=(1, 8, 8))
    >>> from gradleak.metrics import evaluate
    >>> from gradleak.core.types import GroundTruth
    >>> evaluate(rec, GroundTruth(x, torch.zeros(4, dtype=torch.long)))["exact_fraction"]
    1.0
    >>> rec.info["complete"], rec.info["samples_verified"]
    (True, 4)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gradleak.attacks.base import Attack
from gradleak.attacks.spear.budget import Deadline, spent
from gradleak.attacks.spear.delta import delta_gradient
from gradleak.attacks.spear.distinct import expand, make_replay, multiplicities
from gradleak.attacks.spear.errorbar import error_bars, thin_svd
from gradleak.attacks.spear.finish import FINISH_FACTOR, finish, trial_cost
from gradleak.attacks.spear.peel import Peeled, peel, reduced_basis, residuals
from gradleak.attacks.spear.sampling import Candidates, Tolerances
from gradleak.attacks.spear.search import Problem, SearchStats, search
from gradleak.attacks.spear.select import consistency, describe, fill_directions
from gradleak.attacks.spear.structure import next_layer_span
from gradleak.attacks.spear.verify import noise_limit
from gradleak.core.errors import ConfigError, GradleakError
from gradleak.core.seeding import attack_generator
from gradleak.core.types import ClientUpdate, Progress, Reconstruction
from gradleak.labels.resolve import resolve_labels
from gradleak.models.layers import Normalize

log = logging.getLogger(__name__)
PASSTHROUGH = (Normalize, nn.Flatten, nn.Identity, nn.Dropout)
METHODS = ("hybrid", "sample")
DUPLICATES = ("merge", "refuse")


def locate_layer(model: nn.Module) -> tuple[list[nn.Module], str | None, nn.Linear | None, list[str]]:
    """The modules before the first weighted layer, its name and module, and why SPEAR can't use it."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    prefix: list[nn.Module] = []
    for k, (name, mod) in enumerate(leaves):
        if next(mod.parameters(recurse=False), None) is None:
            if not isinstance(mod, PASSTHROUGH):
                return prefix, None, None, [
                    f"module {name!r} ({type(mod).__name__}) comes before the first weighted layer and "
                    "cannot be inverted; SPEAR allows only Normalize/Flatten/Identity/Dropout there"]
            prefix.append(mod)
            continue
        if not isinstance(mod, nn.Linear):
            return prefix, name, None, [
                f"the first weighted layer {name!r} is {type(mod).__name__}, not nn.Linear; SPEAR needs "
                "a fully connected first layer followed by ReLU (use e.g. --model mlp)"]
        reasons = []
        after = leaves[k + 1][1] if k + 1 < len(leaves) else None
        if not isinstance(after, nn.ReLU):
            found = type(after).__name__ if after is not None else "nothing"
            reasons.append(f"the first linear layer {name!r} is followed by {found}, not ReLU; "
                           "SPEAR's sparsity filter needs a ReLU right after it")
        if mod.bias is None:
            reasons.append(f"the first linear layer {name!r} has no bias; SPEAR recovers scale and sign "
                           "from the bias gradient (build the layer with bias=True)")
        return prefix, name, mod, reasons
    return prefix, None, None, ["the model has no weighted layer"]


def layer_gradients(update: ClientUpdate, name: str, layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """The (average) gradient of ``name``'s weight and bias in float64 (``layer``: the sent weights);
    a weight delta less the optimiser's own drift (:mod:`~gradleak.attacks.spear.delta`)."""
    assert layer.bias is not None  # checked by locate_layer
    return (delta_gradient(update, f"{name}.weight", layer.weight),
            delta_gradient(update, f"{name}.bias", layer.bias))


class Spear(Attack):
    """SPEAR: exact batch reconstruction from a Linear+ReLU layer's gradient.

    Args:
        method: ``hybrid`` (peeling, then proposals from predicted zero sets, steered sampling
            and completion) or ``sample`` (the paper's uniform sampling only).
        max_samples: most row subsets to sample before giving up (best effort is returned).
        batch: subsets per batched QR.
        max_seconds: hard wall-clock budget of the whole attack (default 300 s; ``None``: until
            ``max_samples``). Checked inside every inner loop; the steps after the search
            keep 3 % of it (at most 10 s) or twice their measured cost, whichever is more
            (:mod:`~gradleak.attacks.spear.finish`).
        tau: share of the live rows (beyond the ``b − 1`` sampled ones) a direction must also be
            zero on (the sparsity filter's τ*; rows dead for every sample are not counted).
        zero_tol: relative threshold for a zero entry; ``None`` picks it from the spectrum's noise.
        rank_tol: singular values below ``rank_tol · σ₁`` count as zero when reading the rank.
        tolerance: share of a sample's column allowed on rows its own input switches off before
            the batch counts as not verified (``None``: ``max(1e-6, 10 · σ_{b+1}/σ_b)``, see
            :mod:`~gradleak.attacks.spear.verify`).
        duplicates: ``merge`` (a gradient of rank ``d < b`` has ``d`` distinct inputs: recover
            them, fit how often each occurs, report ``info["distinct"]``) or ``refuse``.
        peel: (hybrid) peel samples read from single-sample neurons off the gradient first.
        mixtures: (hybrid) when exact reads stall, also read neurons that a second unknown
            sample contaminates a little (:func:`~gradleak.attacks.spear.peel.peel`).
        labels: ``auto`` (known if they leak, else a batch label method when one works),
            ``none``, ``known``, ``restore`` or a label method name.
        seed: seeds every random choice of the sampler.
    """

    name = "spear"
    presets = {"tiny": {"max_seconds": 20.0},
               "paper": {"method": "sample", "batch": 10000}}
    paper_sources = {
        "method": "[ABS] uniform sampling of b-1 rows, sparsity filter, greedy selection (hybrid is gradleak's)",
        "batch": "[ABS] 10^4 submatrices evaluated in parallel",
    }
    default_tuned_on = ("not tuned on a scored split: hybrid proposals and tolerances were developed in "
                        "issue 6; every output is checked by the exact kernel test")
    cpu_only = True  # its sampling and selection are CPU linear algebra (float64); the update is moved there
    takes_labels = True
    exact = True
    progress_unit = "sampled row subsets"
    progress_total_is_bound = True

    def __init__(self, *, method: str = "hybrid", max_samples: int = 50_000_000, batch: int = 4096,
                 max_seconds: float | None = 300.0, tau: float = 0.1, zero_tol: float | None = None,
                 rank_tol: float = 1e-5, tolerance: float | None = None, duplicates: str = "merge",
                 peel: bool = True, mixtures: bool = True, labels: str = "auto", seed: int = 0) -> None:
        problems = []
        if method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if duplicates not in DUPLICATES:
            problems.append(f"duplicates must be one of {', '.join(DUPLICATES)}, got {duplicates!r}")
        if max_samples < 0 or batch < 1:
            problems.append(f"max_samples must be >= 0 and batch >= 1, got {max_samples}, {batch}")
        if max_seconds is not None and not max_seconds > 0:
            problems.append(f"max_seconds must be > 0 (or None for no limit), got {max_seconds}")
        if not 0 < tau < 1:
            problems.append(f"tau must be in (0, 1), got {tau}")
        if zero_tol is not None and not 0 < zero_tol < 1:
            problems.append(f"zero_tol must be in (0, 1), got {zero_tol}")
        if tolerance is not None and not 0 < tolerance < 1:
            problems.append(f"tolerance must be in (0, 1), got {tolerance}")
        if not 0 < rank_tol < 1:
            problems.append(f"rank_tol must be in (0, 1), got {rank_tol}")
        if problems:
            raise ConfigError("spear: " + "; ".join(problems))
        self.method, self.max_samples, self.batch, self.max_seconds = method, max_samples, batch, max_seconds
        self.tau, self.zero_tol, self.rank_tol, self.tolerance = tau, zero_tol, rank_tol, tolerance
        self.duplicates, self.labels, self.seed = duplicates, labels, seed
        self.peel, self.mixtures = bool(peel), bool(mixtures)
        self._started: float | None = None
        self._factors: tuple | None = None

    def run(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
            progress: Progress | None = None, device: Any = None) -> Reconstruction:
        """``Attack.run``; the budget counts from here (the SVD in ``check`` included)."""
        self._started, self._factors = time.perf_counter(), None
        try:
            return super().run(model, update, shape=shape, progress=progress, device=device)
        finally:
            self._started, self._factors = None, None

    def _svd(self, update: ClientUpdate, name: str, layer: nn.Linear) -> tuple[torch.Tensor, ...]:
        """``(∂L/∂W, ∂L/∂b, U, S, Vh)`` in float64, computed once per ``run``."""
        key = id(update.tensors[f"{name}.weight"])
        cached = self._factors
        if cached is not None and cached[0] == key:
            return cached[1]
        gw, gb = layer_gradients(update, name, layer)
        out = (gw, gb, *thin_svd(gw))
        self._factors = (key, out)
        return out

    def _check(self, model: nn.Module, update: ClientUpdate) -> list[str]:
        _, name, layer, reasons = locate_layer(model)
        if layer is None or name is None:
            return reasons
        b, (m, n) = update.num_examples, layer.weight.shape
        if b >= m:
            reasons.append(f"batch size {b} must be below the layer width {m} (rank {b} cannot be read "
                           "from an m×n gradient otherwise); use a wider layer or a smaller batch")
        if b >= n:
            reasons.append(f"batch size {b} must be below the input dimension {n}")
        if reasons or f"{name}.weight" not in update.tensors or f"{name}.bias" not in update.tensors:
            return reasons
        rank = self._rank(self._svd(update, name, layer)[3])
        if rank == 0 or (rank < b and self.duplicates == "refuse"):
            reasons.append(f"the gradient of {name!r} has numerical rank {rank} < batch size {b} "
                           f"(rank_tol={self.rank_tol}): some samples are duplicates, inactive or "
                           "colinear, or num_examples is wrong; SPEAR needs full rank"
                           + (" (duplicates='merge' recovers the distinct ones)" if rank else ""))
        return reasons

    def _rank(self, sv: torch.Tensor) -> int:
        return int((sv > self.rank_tol * sv[0]).sum()) if sv[0] > 0 else 0

    def _tolerances(self, noise: float) -> Tolerances:
        zero = self.zero_tol if self.zero_tol is not None else min(0.05, max(1e-9, 2 * noise))
        return Tolerances(zero=zero, null=min(1e-3, max(1e-12, 10 * zero**2)), tau=self.tau,
                          dedup=min(1e-2, max(1e-9, zero)))

    def reconstruct(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
                    progress: Progress | None = None) -> Reconstruction:
        deadline = Deadline(self.max_seconds, start=self._started)
        prefix, name, layer, _ = locate_layer(model)
        assert layer is not None and name is not None  # guaranteed by check()
        if math.prod(shape) != layer.in_features:
            raise ConfigError(f"input shape {tuple(shape)} has {math.prod(shape)} values but layer "
                              f"{name!r} takes {layer.in_features}; pass the dataset's image shape")
        prob, info = self._problem(update, name, layer)
        prob.span = next_layer_span(model, layer, update, prob.tol.zero, prob.noise, info["live_rows"])
        info["output_span_test"] = prob.span is not None
        prob.replay = make_replay(model, name, layer, update, shape, lambda X: _to_pixels(X, prefix, shape))
        info["verified_by"] = "replay" if prob.replay is not None else "relu"
        if update.kind == "weight_delta" and prob.replay is None:
            info["verified_by"] = "none"                 # mini-batch FedAvg: cannot be replayed
        gen = attack_generator(self.seed)
        if math.isfinite(deadline.seconds):      # keep what the finishing steps will cost (finish.py)
            deadline.keep(max(deadline.reserved, FINISH_FACTOR * trial_cost(prob)))
            info["finish_reserve"] = deadline.reserved
        q_hat, duals = self._find(prob, gen, deadline, progress, info)
        q_hat, verdict = finish(prob, q_hat, duals)
        info.update(verdict.summary())
        if verdict.noise_limited:
            info["error_bar"] = error_bars(prob.gw, prob.gb, prob.L, prob.R, q_hat, prob.alive, prob.tol.zero,
                                           lambda x: _to_pixels(x, prefix, shape), seed=self.seed,
                                           deadline=deadline).tolist()
        info["lambda"] = consistency(verdict.X, verdict.G, prob.W, prob.bias, prob.alive, prob.tol.zero)
        X, b = verdict.X, update.num_examples
        if prob.b < b:
            counts = multiplicities(model, layer, verdict.X, verdict.G, b, shape)
            info["multiplicity"] = counts.tolist()
            X = expand(X, counts, b)
        info["search_seconds"] = deadline.elapsed()
        if not info["complete"]:
            log.warning("spear: %d of %d samples verified (relative residual %.2e, floor %.2e); "
                        "the reconstruction is partial", info["samples_verified"], prob.b,
                        info["residual_w"], info["residual_floor_w"])
        pixels = _to_pixels(X, prefix, shape)
        labels, how = self._labels(model, update, shape)
        info["labels_from"] = how
        return Reconstruction(pixels.float(), labels, [1.0 - info["lambda"]], info=info)

    def _problem(self, update: ClientUpdate, name: str, layer: nn.Linear) -> tuple[Problem, dict]:
        """The float64 factorisation of the layer gradient, with tolerances and what it tells."""
        gw, gb, U, S, Vh = self._svd(update, name, layer)
        W, bias = layer.weight.detach().double(), layer.bias.detach().double()
        b = update.num_examples
        d = min(b, self._rank(S)) if self.duplicates == "merge" else b
        L, R = U[:, :d], S[:d, None] * Vh[:d]
        noise = float(S[d] / S[d - 1]) if len(S) > d else 0.0
        tol = self._tolerances(noise)
        norms = L.norm(dim=1)
        alive = norms > min(0.05, max(1e-6, 3 * noise)) * norms.max()
        info: dict = {"method": self.method, "batch_size": b, "distinct": d, "rank_spectrum_gap": noise,
                      "zero_tol": tol.zero, "live_rows": int(alive.sum())}
        if d < b:
            log.warning("spear: the gradient has rank %d < batch size %d: recovering %d distinct inputs",
                        d, b, d)
        limit = noise_limit(S, d)
        info["noise_limit"] = limit if math.isfinite(limit) else "none (float32 rounding)"
        return Problem(L, R, gw, gb, W, bias, alive, tol, noise, tolerance=self.tolerance, limit=limit), info

    def _find(self, prob: Problem, gen: torch.Generator, deadline: Deadline, progress: Progress | None,
              info: dict) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """``b`` unit directions (columns): peeling, then the search on what is left. Also the
        exact ``(T, s)`` of the first ``len(T)`` directions (peeled: their inputs are known)."""
        b = prob.b
        if b == 1:
            info.update({"stopped": "verified", "directions_found": 1})
            return torch.ones(1, 1, dtype=torch.float64), None
        stats = SearchStats()
        found = prob.L.new_zeros(0, b)
        sub, basis, seed_q, peeled, duals = prob, torch.eye(b, dtype=torch.float64), found, 0, None
        if self.method == "hybrid" and self.peel:
            pe = peel(prob.L, prob.R, prob.gb, prob.W, prob.bias, prob.alive, prob.tol, gen, deadline,
                      fracs=(1.0, 0.7, 0.45) if self.mixtures else (1.0,), check=prob.plausible)
            info.update({"peeled": pe.peeled, "peel_rounds": pe.rounds, "peel_tested": pe.tested,
                         "peel_seconds": deadline.elapsed()})
            found, peeled, duals = pe.q, pe.peeled, ((pe.t, pe.s) if pe.peeled else None)
            if len(found) == b and prob.verify(found.T):
                info.update({"stopped": "verified", "directions_found": b})
                return found.T, duals
            if len(found) == b and prob.noise > prob.limit:   # nothing exact to search for
                info.update({"stopped": "noise-limited", "directions_found": b})
                return found.T, duals
            if b - 2 <= len(found) < b:          # complete the last one or two from the directions
                pool = Candidates(b, prob.tol.dedup)
                pool.add(*describe(found, prob.L, prob.alive, prob.tol))
                q_hat, pool, done = search(prob, self.method, gen, deadline.part(0.2), 0, self.batch, pool,
                                           row_ratios=False, stats=stats)
                if done and q_hat is not None:
                    info.update({"stopped": "verified", "directions_found": len(pool)})
                    return q_hat, None
            if 0 < peeled < b:
                sub, basis = _reduce(prob, pe)
            else:                                   # nothing removed, or all b found yet wrong
                peeled = 0
            seed_q = found[peeled:] @ basis
        pool = Candidates(sub.b, sub.tol.dedup)
        if len(seed_q):
            pool.add(*describe(seed_q / seed_q.norm(dim=1, keepdim=True), sub.L, sub.alive, sub.tol))
        q_sub, pool, done = search(sub, self.method, gen, deadline, self.max_samples, self.batch, pool,
                                   row_ratios=not self.peel, progress=progress, stats=stats)
        info.update({"samples_drawn": stats.drawn, "proposal_rounds": stats.proposal_rounds,
                     "from_structure": stats.structured, "rejected_by_span": pool.rejected,
                     "from_row_ratios": stats.from_row_ratios, "selections": stats.selections,
                     "directions_found": peeled + len(pool),
                     "stopped": "verified" if done else "budget" if spent(deadline) else
                     "max_samples" if stats.drawn >= self.max_samples else "stalled"})
        rest = fill_directions(pool, sub.b) if q_sub is None else q_sub
        return torch.cat([found[:peeled], (basis @ rest).T]).T, duals if peeled else None

    def _labels(self, model: nn.Module, update: ClientUpdate,
                shape: Sequence[int]) -> tuple[torch.Tensor | None, str]:
        if self.labels == "none":
            return None, "none"
        try:
            return resolve_labels(model, update, self.labels, shape=shape)
        except GradleakError as err:
            if self.labels not in ("auto", "restore"):
                raise
            log.info("spear: labels left unknown (%s)", err)
            return None, "unknown"


def _to_pixels(X: torch.Tensor, prefix: list[nn.Module], shape: Sequence[int]) -> torch.Tensor:
    """Undo the modules before the layer: reshape to images, then invert each ``Normalize``."""
    x = X.reshape(X.shape[0], *shape)
    for mod in reversed(prefix):
        if isinstance(mod, Normalize):
            x = mod.inverse(x.double())
    return x


def _reduce(prob: Problem, pe: Peeled) -> tuple[Problem, torch.Tensor]:
    """The rank-``b − k`` problem of the samples peeling did not remove, and its basis ``V``."""
    basis = reduced_basis(pe.t, prob.b)
    known = pe.q[:pe.peeled]
    rho, rhob = residuals(prob.L, prob.gb, known, pe.t, pe.s)
    L = prob.L @ basis
    R = basis.T @ (prob.L.T @ rho) @ prob.R
    norms = L.norm(dim=1)
    alive = prob.alive & ~pe.inside & (norms > 1e-6 * norms.max())

    def lift(q_sub: torch.Tensor) -> torch.Tensor:
        return torch.cat([known, (basis @ q_sub).T]).T

    return Problem(L, R, rho @ prob.R, rhob, prob.W, prob.bias, alive, prob.tol, prob.noise,
                   lift=lift, parent=prob, span=prob.span, limit=prob.limit), basis

