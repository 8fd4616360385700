"""SPEAR: exact gradient inversion of batches (Dimitrov, Baader, Müller, Vechev; NeurIPS 2024; arXiv 2403.03945).

Threat model: honest-but-curious server with the model's weights and one FedSGD gradient (or
a FedAvg weight delta, read as the average gradient ``−ΔW / (lr · T_eff) − wd · W₀``, exact
for one local step of SGD with or without momentum and weight decay).
Needs: a first weighted layer ``nn.Linear`` *with bias* followed by ``nn.ReLU``, preceded only by
``Normalize``/``Flatten``/``Identity``/``Dropout`` (inverted here); batch size ``b`` below the layer
width and the input dimension; no labels (reported as unknown, or restored by a label method).

The weight gradient ``∂L/∂W = (∂L/∂Z) X`` has rank ``b``; with its SVD ``L R`` there is an
invertible ``Q`` with ``∂L/∂Z = L Q`` and ``X = Q⁻¹ R``. Each column of ``∂L/∂Z`` vanishes where
that sample's ReLU is off, so ``b − 1`` rows of ``L`` inside one zero set have that column's
direction as their kernel. ``method="sample"`` is the paper: sample row subsets (batched QR in
float64), keep sparse directions, deduplicate, pick ``b`` greedily by the sparsity-match score λ,
and fix scale and sign with ``∂L/∂bias``. ``method="hybrid"`` (default) first proposes directions
from predicted zero sets (:mod:`~gradleak.attacks.spear.hybrid`), steers sampling toward
rows that are often off, and completes the last missing direction with a one-dimensional scan.

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
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import torch
from torch import nn

from gradleak.attacks.base import Attack
from gradleak.attacks.spear.hybrid import (
    directions_from_inputs,
    line_scan_directions,
    row_logits,
    row_pairs,
    row_ratio_inputs,
)
from gradleak.attacks.spear.sampling import (
    Candidates,
    Tolerances,
    null_directions,
    sample_directions,
    zero_masks,
)
from gradleak.attacks.spear.select import (
    agreement,
    assemble,
    complete_last,
    complete_pair,
    consistency,
    describe,
    fill_directions,
    independent,
    select,
)
from gradleak.core.errors import ConfigError, GradleakError
from gradleak.core.seeding import attack_generator
from gradleak.core.types import ClientUpdate, Progress, Reconstruction
from gradleak.inversion.gradients import average_gradient
from gradleak.labels.resolve import resolve_labels
from gradleak.models.layers import Normalize

log = logging.getLogger(__name__)
PASSTHROUGH = (Normalize, nn.Flatten, nn.Identity, nn.Dropout)
METHODS = ("hybrid", "sample")


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
    """The (average) gradient of ``name``'s weight and bias in float64 (``layer``: the sent weights)."""
    assert layer.bias is not None  # checked by locate_layer
    return (average_gradient(update, f"{name}.weight", layer.weight, torch.float64),
            average_gradient(update, f"{name}.bias", layer.bias, torch.float64))


class Spear(Attack):
    """SPEAR: exact batch reconstruction from a Linear+ReLU layer's gradient.

    Args:
        method: ``hybrid`` (proposals from predicted zero sets, steered sampling, completion of
            the last direction) or ``sample`` (the paper's uniform sampling only).
        max_samples: most row subsets to sample before giving up (best effort is returned).
        batch: subsets per batched QR.
        max_seconds: wall-clock budget for the search (default 300 s; ``None``: until ``max_samples``).
        tau: share of the live rows (beyond the ``b − 1`` sampled ones) a direction must also be
            zero on (the sparsity filter's τ*; rows dead for every sample are not counted).
        zero_tol: relative threshold for a zero entry; ``None`` picks it from the spectrum's noise.
        rank_tol: singular values below ``rank_tol · σ₁`` count as zero when reading the rank.
        accept: stop once the sparsity-match score λ (worst sample's share of rows whose ReLU
            state matches the zero pattern) of ``b`` chosen directions reaches this
            (0.95 at most for FedAvg deltas and noisy updates).
        labels: ``auto`` (known if they leak, else a batch label method when one works),
            ``none``, ``known``, ``restore`` or a label method name.
        seed: seeds every random choice of the sampler.
    """

    name = "spear"
    presets = {"tiny": {"max_seconds": 20.0}}
    takes_labels = True
    exact = True
    progress_unit = "sampled row subsets"
    progress_total_is_bound = True

    def __init__(self, *, method: str = "hybrid", max_samples: int = 50_000_000, batch: int = 4096,
                 max_seconds: float | None = 300.0, tau: float = 0.1, zero_tol: float | None = None,
                 rank_tol: float = 1e-5, accept: float = 0.99, labels: str = "auto",
                 seed: int = 0) -> None:
        problems = []
        if method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if max_samples < 0 or batch < 1:
            problems.append(f"max_samples must be >= 0 and batch >= 1, got {max_samples}, {batch}")
        if not 0 < tau < 1:
            problems.append(f"tau must be in (0, 1), got {tau}")
        if zero_tol is not None and not 0 < zero_tol < 1:
            problems.append(f"zero_tol must be in (0, 1), got {zero_tol}")
        if not 0 < rank_tol < 1 or not 0 < accept <= 1:
            problems.append(f"rank_tol must be in (0, 1) and accept in (0, 1], got {rank_tol}, {accept}")
        if problems:
            raise ConfigError("spear: " + "; ".join(problems))
        self.method, self.max_samples, self.batch, self.max_seconds = method, max_samples, batch, max_seconds
        self.tau, self.zero_tol, self.rank_tol, self.accept = tau, zero_tol, rank_tol, accept
        self.labels, self.seed = labels, seed

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
        sv = torch.linalg.svdvals(layer_gradients(update, name, layer)[0])
        rank = int((sv > self.rank_tol * sv[0]).sum()) if sv[0] > 0 else 0
        if rank < b:
            reasons.append(f"the gradient of {name!r} has numerical rank {rank} < batch size {b} "
                           f"(rank_tol={self.rank_tol}): some samples are duplicates, inactive or "
                           "colinear, or num_examples is wrong; SPEAR needs full rank")
        return reasons

    def _tolerances(self, noise: float) -> Tolerances:
        zero = self.zero_tol if self.zero_tol is not None else min(0.05, max(1e-9, 2 * noise))
        return Tolerances(zero=zero, null=min(1e-3, max(1e-12, 10 * zero**2)), tau=self.tau,
                          dedup=min(1e-2, max(1e-9, zero)))

    def reconstruct(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
                    progress: Progress | None = None) -> Reconstruction:
        start = time.perf_counter()
        prefix, name, layer, _ = locate_layer(model)
        assert layer is not None and name is not None  # guaranteed by check()
        if math.prod(shape) != layer.in_features:
            raise ConfigError(f"input shape {tuple(shape)} has {math.prod(shape)} values but layer "
                              f"{name!r} takes {layer.in_features}; pass the dataset's image shape")
        gw, gb = layer_gradients(update, name, layer)
        W, bias = layer.weight.detach().double(), layer.bias.detach().double()
        b = update.num_examples
        U, S, Vh = torch.linalg.svd(gw, full_matrices=False)
        L, R = U[:, :b], S[:b, None] * Vh[:b]
        noise = float(S[b] / S[b - 1]) if len(S) > b else 0.0
        tol = self._tolerances(noise)
        norms = L.norm(dim=1)
        alive = norms > min(0.05, max(1e-6, 3 * noise)) * norms.max()
        pool, gen = Candidates(b, tol.dedup), attack_generator(self.seed)
        info: dict = {"method": self.method, "rank_spectrum_gap": noise, "zero_tol": tol.zero,
                      "live_rows": int(alive.sum())}
        if self.method == "hybrid":
            pool.add(*directions_from_inputs(row_ratio_inputs(gw, gb, alive), L, W, bias, alive, tol))
            info["from_row_ratios"] = len(pool)
        drawn, rounds, completed_at, selected_at, best = 0, 0, -1, -1, (None, -1.0)
        # FedAvg (weights move during local steps) and noise blur the ReLU pattern: be tolerant.
        accept = self.accept if update.kind == "gradients" and noise < 1e-4 else min(self.accept, 0.95)
        strengths = (0.0, 1.0, 2.0, 4.0) if self.method == "hybrid" else (0.0,)
        while True:
            if len(pool) >= b and selected_at != len(pool):
                selected_at = len(pool)
                q_hat, lam = select(pool, L, R, gb, W, bias, alive, tol)
                if lam > best[1]:
                    best = (q_hat, lam)
                if lam >= accept:
                    break
            if self.method == "hybrid" and (completed_at != len(pool) or rounds % 6 == 5):
                completed_at = len(pool)
                if self._propose(pool, gw, gb, L, R, W, bias, alive, tol, gen):
                    info["proposal_rounds"] = info.get("proposal_rounds", 0) + 1
                    continue
            if drawn >= self.max_samples or time.perf_counter() - start > (self.max_seconds or math.inf):
                break
            n = min(self.batch * 8, self.max_samples - drawn)
            strength = strengths[rounds % len(strengths)]
            logits = row_logits(pool, L, alive, strength) if strength > 0 else None
            pool.add(*sample_directions(L, alive, n, tol, gen, logits, self.batch))
            drawn, rounds = drawn + n, rounds + 1
            if progress is not None:
                progress(drawn, self.max_samples, float(b - len(pool)))
        q_hat, lam = best
        if q_hat is None:
            q_hat = fill_directions(pool, b)
        polished, ok = null_directions(L, zero_masks(q_hat.T @ L.T, alive, tol.zero), tol)
        q_hat = torch.where(ok[None, :], polished.T, q_hat)      # re-solve each on its zero set
        X, G = assemble(L, R, gb, q_hat)
        lam = consistency(X, G, W, bias, alive, tol.zero)
        info.update({"directions_found": len(pool), "samples_drawn": drawn, "lambda": lam,
                     "complete": len(pool) >= b and lam >= accept})
        if not info["complete"]:
            log.warning("spear: found %d of %d directions (λ=%.3f); the reconstruction is partial",
                        len(pool), b, lam)
        pixels = _to_pixels(X, prefix, shape)
        labels, how = self._labels(model, update, shape)
        info["labels_from"] = how
        return Reconstruction(pixels.float(), labels, [1.0 - lam], info=info)

    def _propose(self, pool: Candidates, gw: torch.Tensor, gb: torch.Tensor, L: torch.Tensor,
                 R: torch.Tensor, W: torch.Tensor, bias: torch.Tensor, alive: torch.Tensor,
                 tol: Tolerances, gen: torch.Generator) -> bool:
        """Hybrid proposals that use the directions found so far; True if any new one was found.

        Line scans through pairs of row ratios that share their known active sample, then (with
        one or two directions missing) the exact completion from the others.
        """
        b = L.shape[1]
        start, end = row_pairs(pool, gw, gb, alive, W, bias, gen)
        if len(start):
            new = line_scan_directions(start, end, L, W, bias, alive, tol)
            if len(new) and pool.add(*describe(new, L, alive, tol)):
                return True
        found = independent(pool, b)
        if len(found) == b:                       # b directions but λ too low: distrust the worst
            X, G = assemble(L, R, gb, found.T)
            found = found[agreement(X, G, W, bias, alive, tol.zero).argsort(descending=True)]
        for k, complete in ((b - 1, complete_last), (b - 2, complete_pair)):
            for frac in ((1.0, 0.8) if len(found) >= k else ()):
                new = complete(found[:k], L, R, W, bias, alive, tol, frac)
                if len(new) and pool.add(*describe(new, L, alive, tol)):
                    return True
        return False

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
