"""Shared pieces of batch label restoration: dummy statistics, applicability checks, rounding.

Count-based label methods (Geng et al. 2021, the bias variant, iLRG, Dimitrov et al. 2022)
need the mean softmax ``p̄`` and the mean penultimate-activation sum ``Ô`` of the current
model, estimated zero-shot by forwarding seeded dummy inputs (uniform pixels in ``[0, 1]``).
The input shape ``(C, H, W)`` is always passed in by the caller (the attack knows it).

Example:
    >>> import torch
    >>> round_counts(torch.tensor([1.6, 0.7, -0.2, 1.9]), 4).tolist()
    [1, 1, 0, 2]
    >>> counts_to_labels(torch.tensor([1, 0, 2])).tolist()
    [0, 2, 2]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from gradleak.core.device import model_device
from gradleak.core.errors import NotApplicableError
from gradleak.core.types import ClientUpdate
from gradleak.inversion.gradients import observed_gradient
from gradleak.models.layers import last_linear

DUMMY_SAMPLES = 256
"""Dummy inputs forwarded to estimate ``p̄`` and ``Ô`` (LeakPro uses 100)."""
NONNEG_TOLERANCE = 1e-6


@dataclass(frozen=True)
class DummyStats:
    """Statistics of dummy inputs through the model.

    Args:
        p_mean: mean softmax over the dummy inputs ``(C,)``.
        o_hat: mean over dummy inputs of the sum of the last layer's input features.
        feature_min: smallest input feature of the last linear layer seen.
        output_is_linear: whether the model's output is exactly the last linear layer's output.
    """

    p_mean: torch.Tensor
    o_hat: float
    feature_min: float
    output_is_linear: bool


def _last_linear_or_raise(model: nn.Module, what: str) -> tuple[str, nn.Linear]:
    found = last_linear(model)
    if found is None:
        raise NotApplicableError(
            what, ["the model has no nn.Linear layer, so there is no last-layer gradient to read; "
                   "use --labels known"])
    return found


def dummy_statistics(
    model: nn.Module,
    shape: Sequence[int],
    *,
    params: Mapping[str, torch.Tensor] | None = None,
    samples: int = DUMMY_SAMPLES,
    seed: int = 0,
) -> DummyStats:
    """Forward seeded dummy inputs and collect ``p̄``, ``Ô`` and checks (no state changes).

    Args:
        model: the attacked model; BN running buffers are never modified.
        shape: input shape ``(C, H, W)``.
        params: parameters to use instead of the model's (FedAvg interpolation).
        samples: number of dummy inputs.
        seed: seeds the dummy inputs.
    """
    _, layer = _last_linear_or_raise(model, "label restoration")
    gen = torch.Generator().manual_seed(int(seed) + 104729)
    x = torch.rand((samples, *shape), generator=gen).to(model_device(model))  # drawn on the CPU: same on every device
    captured: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        captured["features"] = args[0].detach()
        captured["logits"] = out.detach()

    handle = layer.register_forward_hook(hook)
    try:
        state = {n: p.detach() for n, p in model.named_parameters()}
        if params is not None:
            state.update({n: t.detach() for n, t in params.items()})
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        with torch.no_grad():
            out = functional_call(model, (state, buffers), (x,))
    finally:
        handle.remove()
    feats = captured["features"].reshape(samples, -1)
    logits = captured["logits"]
    same = out.shape == logits.shape and bool(torch.allclose(out, logits, atol=1e-5, rtol=1e-4))
    probs = torch.softmax(out.double(), dim=-1)
    return DummyStats(probs.mean(0), float(feats.double().sum(1).mean()), float(feats.min()), same)


def check_applicable(
    model: nn.Module,
    update: ClientUpdate,
    method: str,
    *,
    shape: Sequence[int],
    nonnegative: bool,
    needs_bias: bool = False,
    alternatives: Sequence[str] = (),
) -> tuple[int, int, int]:
    """Raise :class:`NotApplicableError` with every reason ``method`` cannot run; return the shape.

    Args:
        shape: the client's input shape ``(C, H, W)``.
        nonnegative: the method assumes non-negative inputs to the last linear layer.
        needs_bias: the method reads the last layer's bias gradient.
        alternatives: methods to suggest when an assumption is broken.
    """
    what = f"label method {method!r}"
    _, layer = _last_linear_or_raise(model, what)
    shape = check_shape(shape, what)
    stats = dummy_statistics(model, shape, samples=16)
    reasons = []
    if not stats.output_is_linear:
        reasons.append("the model's output is not the last nn.Linear layer's output (a layer follows "
                       "it), so the softmax-gradient identity does not hold; use --labels known")
    if nonnegative and stats.feature_min < -NONNEG_TOLERANCE:
        alts = ", ".join(alternatives) or "known"
        reasons.append(f"it assumes non-negative inputs to the last linear layer (ReLU/sigmoid), but "
                       f"they reach {stats.feature_min:.3g} on dummy inputs; use one of: {alts}")
    if needs_bias and layer.bias is None:
        reasons.append("it needs the bias gradient of the last linear layer, which has no bias; "
                       "use geng, llg or yin")
    if reasons:
        raise NotApplicableError(what, reasons)
    return shape


def check_shape(shape: Sequence[int] | None, what: str) -> tuple[int, int, int]:
    """``shape`` as ``(C, H, W)`` ints, or :class:`NotApplicableError` when it is missing or malformed."""
    if shape is None or len(shape) != 3 or min(int(s) for s in shape) < 1:
        raise NotApplicableError(what, [f"it needs the client's input shape (C, H, W), got {shape!r}; "
                                        "pass shape=dataset.shape"])
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def last_layer_gradients(model: nn.Module, update: ClientUpdate) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The observed gradient of the last linear layer's weight ``(N, M)`` and bias ``(N,)``."""
    prefix = _last_linear_or_raise(model, "label restoration")[0]
    prefix = f"{prefix}." if prefix else ""
    names = [n for n, _ in model.named_parameters()]
    grads = dict(zip(names, observed_gradient(model, update), strict=True))
    return grads[prefix + "weight"], grads.get(prefix + "bias")


def round_counts(raw: torch.Tensor, total: int) -> torch.Tensor:
    """Round real-valued counts to non-negative integers that sum to ``total``.

    Clamps at 0 (and at ``total``), scales down when the counts add up to more than ``total``,
    floors, then hands the missing units to the largest fractional parts (the eth-sri/fleak
    rounding).
    """
    raw = torch.nan_to_num(raw.detach().double(), nan=0.0, posinf=float(total), neginf=0.0)
    raw = raw.clamp(min=0.0, max=float(total))
    if float(raw.sum()) > total:
        raw = raw * (total / float(raw.sum()))
    counts = raw.floor().long()
    frac = raw - raw.floor()
    missing = total - int(counts.sum())
    order = torch.argsort(frac, descending=True, stable=True)
    for i in range(missing):
        counts[order[i % len(order)]] += 1
    return counts


def counts_to_labels(counts: torch.Tensor) -> torch.Tensor:
    """The sorted label multiset ``(Σ counts,)`` of per-class ``counts``."""
    return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts.long())
