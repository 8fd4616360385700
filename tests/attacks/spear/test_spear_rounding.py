"""The noise limit tells float32 rounding of an ill-conditioned batch from added noise (issue 19)."""

from __future__ import annotations

import math

import torch

from gradleak.attacks.spear.verify import NOISE_LIMIT, noise_limit, verify


def _case(scale: float, noise: float) -> tuple:
    """A rank-3 layer gradient of a batch with two near-duplicate inputs, rounded to float32."""
    g = torch.Generator().manual_seed(4)
    W = torch.randn(60, 8, generator=g, dtype=torch.float64)
    bias = torch.randn(60, generator=g, dtype=torch.float64) * 0.1
    X = torch.randn(3, 8, generator=g, dtype=torch.float64)
    X[2] = X[1] + scale * torch.randn(8, generator=g, dtype=torch.float64)   # ill-conditioned pair
    G = torch.randn(60, 3, generator=g, dtype=torch.float64) * ((X @ W.T + bias) > 0).T
    gw, gb = G @ X, G.sum(1)
    gw = gw + noise * gw.norm() * torch.randn(gw.shape, generator=g, dtype=torch.float64)
    gw, gb = gw.float().double(), gb.float().double()                        # what a client sends
    U, S, Vh = torch.linalg.svd(gw, full_matrices=False)
    L, R = U[:, :3], S[:3, None] * Vh[:3]
    q = torch.linalg.lstsq(L, G).solution                                    # the true directions
    return gw, gb, L, R, q / q.norm(dim=0), W, bias, S


def test_rounding_of_an_ill_conditioned_batch_is_not_noise():
    gw, gb, L, R, q, W, bias, S = _case(1e-4, 0.0)
    gap = float(S[3] / S[2])
    assert gap > NOISE_LIMIT and float(S[3] / S[0]) < 1e-6     # the old rule would refuse it
    alive = torch.ones(60, dtype=torch.bool)
    assert not verify(gw, gb, L, R, q, W, bias, alive, gap).complete
    assert noise_limit(S, 3) == math.inf
    assert verify(gw, gb, L, R, q, W, bias, alive, gap, limit=noise_limit(S, 3)).complete
    wrong = q.clone()
    wrong[:, 0] = q[:, 0] + 1e-3 * q[:, 1]                       # one direction off: still refused
    assert not verify(gw, gb, L, R, wrong, W, bias, alive, gap, limit=math.inf).complete


def test_added_noise_stays_noise_limited():
    gw, gb, L, R, q, W, bias, S = _case(1e-4, 1e-5)
    assert float(S[3] / S[0]) > 1e-6 and noise_limit(S, 3) == NOISE_LIMIT
    v = verify(gw, gb, L, R, q, W, bias, torch.ones(60, dtype=torch.bool), float(S[3] / S[2]),
               limit=noise_limit(S, 3))
    assert not v.complete and v.noise_limited
