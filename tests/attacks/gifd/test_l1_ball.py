"""The exact l1-ball projection (Duchi et al. 2008) and GIFD's per-stage balls."""

from __future__ import annotations

import pytest
import torch

from gradleak.attacks.gifd.l1_ball import l1_threshold, project_l1_ball, project_to_ball_around
from gradleak.core.errors import ConfigError


def bisection_projection(v: torch.Tensor, radius: float, iters: int = 200) -> torch.Tensor:
    """Slow reference: find θ with Σ max(|v| − θ, 0) = r by bisection in float64."""
    v = v.double().flatten()
    if v.abs().sum() <= radius:
        return v
    lo, hi = 0.0, float(v.abs().max())
    for _ in range(iters):
        mid = (lo + hi) / 2
        if float((v.abs() - mid).clamp(min=0).sum()) > radius:
            lo = mid
        else:
            hi = mid
    theta = (lo + hi) / 2
    return v.sign() * (v.abs() - theta).clamp(min=0)


@pytest.mark.parametrize("seed", range(6))
def test_projection_matches_bisection_reference(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n, d = 7, [1, 2, 5, 50, 300, 1000][seed]
    v = torch.randn(n, d, generator=gen, dtype=torch.float64) * (1 + seed)
    norms = v.abs().sum(1)
    radii = norms * torch.tensor([0.0, 0.01, 0.2, 0.5, 0.99, 1.0, 3.0], dtype=torch.float64)
    out = project_l1_ball(v, radii)
    for i in range(n):
        ref = bisection_projection(v[i], float(radii[i]))
        assert torch.allclose(out[i], ref, atol=1e-9 * (1 + float(v.abs().max()))), (i, out[i], ref)
        assert float(out[i].abs().sum()) <= float(radii[i]) * (1 + 1e-12) + 1e-12


def test_projection_is_the_nearest_point_of_the_ball() -> None:
    """Variational inequality: <v − p, w − p> ≤ 0 for every w in the ball (p is the projection)."""
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(1, 40, generator=gen, dtype=torch.float64) * 3
    p = project_l1_ball(v, 4.0)[0]
    w = project_l1_ball(torch.randn(500, 40, generator=gen, dtype=torch.float64) * 3, 4.0)
    assert float(((v[0] - p) * (w - p)).sum(1).max()) <= 1e-10
    assert float((v[0] - p).norm()) <= float((v[0] - w).norm(dim=1).min()) + 1e-12


def test_batched_shapes_scalar_radius_and_inside_points() -> None:
    v = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    out = project_l1_ball(v, 1.5)
    assert out.shape == v.shape
    assert torch.all(out.flatten(1).abs().sum(1) <= 1.5 + 1e-5)
    small = v * 1e-3
    assert torch.equal(project_l1_ball(small, 100.0), small)
    assert float(l1_threshold(small.flatten(1), torch.full((3,), 100.0)).abs().max()) == 0.0
    center = torch.ones(3, 2, 4, 4)
    moved = project_to_ball_around(center + v, center, 0.5)
    assert torch.all((moved - center).flatten(1).abs().sum(1) <= 0.5 + 1e-5)


def test_bad_radii_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="radii"):
        project_l1_ball(torch.ones(2, 3), torch.ones(3))
    with pytest.raises(ConfigError, match=">= 0"):
        project_l1_ball(torch.ones(2, 3), -1.0)


def test_gradcheck_float64() -> None:
    v = torch.tensor([[0.9, -0.4, 0.25, 0.05], [1.3, 0.7, -0.2, 0.1]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: project_l1_ball(x, 1.0), (v,))


@pytest.mark.slow
def test_every_gifd_stage_feature_stays_inside_its_ball() -> None:
    from gradleak.attacks.gifd.attack import GIFD
    from gradleak.fl import fedsgd_update
    from gradleak.generative.dcgan import ConditionalDCGAN
    from gradleak.models import build_model

    torch.manual_seed(0)
    gen = ConditionalDCGAN(width=4).eval()
    model = build_model("convnet", shape=(1, 28, 28), num_classes=10, seed=0, width=4)
    update = fedsgd_update(model, torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3)),
                           torch.tensor([1, 6]))
    attack = GIFD(generator=gen, steps=15, restarts=2, radii=(0.05, 0.1), lr=0.5)
    res = attack.search(model, update, shape=(1, 28, 28))
    assert set(res.ball_use) == {1, 2}
    # the large lr pushes features to the boundary: the ball is used, never left
    assert all(0.5 < u <= 1 + 1e-5 for u in res.ball_use.values()), res.ball_use
    # direct check of one stage's loop: every row stays inside its own ball around its start
    h0 = torch.rand(4, 8, 7, 7, generator=torch.Generator().manual_seed(4))
    radius = torch.tensor([0.5, 1.0, 2.0, 4.0])
    cls = torch.tensor([1, 6, 1, 6])

    def grad_loss(x: torch.Tensor, n: int) -> torch.Tensor:
        return (x.reshape(n, -1) - 1).abs().mean(1)

    h, hist, x = attack._stage(gen, 1, h0, cls, radius, grad_loss, 2, 20, None)
    dist = (h - h0).flatten(1).abs().sum(1)
    assert torch.all(dist <= radius * (1 + 1e-5)) and len(hist) == 20 and x.shape == (4, 1, 28, 28)
    z0 = torch.randn(4, gen.latent_dim, generator=torch.Generator().manual_seed(5))
    z, _, _ = attack._stage(gen, 0, z0, cls, None, grad_loss, 2, 10, None)
    assert torch.allclose(z.norm(dim=1), z0.norm(dim=1), rtol=1e-5)  # spherical projection of stage 0
