"""SPEAR (issue 4): exact batch recovery from a Linear+ReLU gradient, its pieces and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradleak.attacks.spear.attack import Spear
from gradleak.attacks.spear.sampling import Candidates, Tolerances, null_directions, sample_directions
from gradleak.attacks.spear.select import assemble, complete_last, complete_pair
from gradleak.core.errors import ConfigError, NotApplicableError
from gradleak.core.registry import create_attack, list_attacks
from gradleak.core.types import LocalTraining
from gradleak.data import sample_batch
from gradleak.fl import fedavg_update, fedsgd_update
from gradleak.metrics import evaluate
from gradleak.models import build_model
from gradleak.models.layers import Normalize


def _setup(digits, b: int, seed: int = 0, width: int = 200, double: bool = False):
    truth = sample_batch(digits, b, seed=seed)
    model = build_model("mlp", shape=digits.shape, num_classes=10, seed=seed, widths=(width,))
    x = truth.inputs
    if double:
        model, x = model.double(), x.double()
    return model, truth, x


def _synthetic(m: int = 60, r: int = 3, n: int = 8, seed: int = 0):
    """A Linear+ReLU layer with a batch of ``r`` inputs: W, bias, X and G = ∂L/∂Z (rows = neurons)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(m, n, generator=g, dtype=torch.float64)
    bias = torch.randn(m, generator=g, dtype=torch.float64) * 0.5
    X = torch.randn(r, n, generator=g, dtype=torch.float64)
    G = torch.randn(m, r, generator=g, dtype=torch.float64) * ((X @ W.T + bias) > 0).T
    U, S, Vh = torch.linalg.svd(G @ X, full_matrices=False)
    return W, bias, X, G, U[:, :r], S[:r, None] * Vh[:r]


def test_registered():
    assert "spear" in list_attacks()
    assert create_attack("spear", method="sample").method == "sample"


@pytest.mark.slow
def test_recovers_batch_of_8_to_1e6(digits):
    """The paper's claim at toy scale: a batch of 8 comes back exactly (float64 update)."""
    model, truth, x = _setup(digits, 8, double=True)
    update = fedsgd_update(model, x, truth.labels)
    rec = Spear(labels="none", seed=0).run(model, update, shape=digits.shape)
    assert rec.inputs.shape == truth.inputs.shape and rec.labels is None
    order = evaluate(rec, truth)["matching"]
    assert (rec.inputs[order].double() - x).abs().max() < 1e-6
    assert rec.info["complete"] and rec.info["lambda"] == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hybrid", "sample"])
def test_float32_update_is_exact_to_1e4(digits, method):
    model, truth, x = _setup(digits, 6 if method == "hybrid" else 4, seed=3)
    update = fedsgd_update(model, x, truth.labels)
    rec = Spear(method=method, labels="none", seed=1).run(model, update, shape=digits.shape)
    assert evaluate(rec, truth)["exact_fraction"] == 1.0


def test_known_labels_pass_through(digits):
    model, truth, x = _setup(digits, 3)
    update = fedsgd_update(model, x, truth.labels, labels_leak=True)
    rec = Spear(labels="auto").run(model, update, shape=digits.shape)
    assert rec.labels is not None and torch.equal(rec.labels, truth.labels)
    assert rec.info["labels_from"] == "known"


@pytest.mark.slow
def test_fedavg_degrades_gracefully(digits):
    """Several small local steps: ΔW/(lr·steps) is still low-rank, recovery stays close."""
    model, truth, x = _setup(digits, 4, seed=2)
    update = fedavg_update(model, x, truth.labels, LocalTraining(lr=0.01, epochs=1, steps=3))
    rec = Spear(labels="none", max_seconds=20).run(model, update, shape=digits.shape)
    assert evaluate(rec, truth)["psnr"] > 30


def test_first_layer_not_linear_names_the_layer(digits):
    model = build_model("convnet", shape=digits.shape, num_classes=10, seed=0)
    update = fedsgd_update(model, digits.inputs[:2], digits.labels[:2])
    with pytest.raises(NotApplicableError, match=r"'1' is Conv2d"):
        Spear().run(model, update, shape=digits.shape)


def test_all_reasons_at_once_no_bias_and_no_relu(digits):
    model = nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(64, 50, bias=False), nn.Sigmoid(),
                          nn.Linear(50, 10))
    update = fedsgd_update(model, digits.inputs[:2], digits.labels[:2])
    with pytest.raises(NotApplicableError) as err:
        Spear().run(model, update, shape=digits.shape)
    assert "followed by Sigmoid, not ReLU" in str(err.value) and "has no bias" in str(err.value)
    assert len(err.value.reasons) == 2


def test_batch_not_below_width_or_input_dim():
    shape = (1, 2, 2)
    model = build_model("mlp", shape=shape, num_classes=3, seed=0, widths=(5,))
    x = torch.rand(6, *shape, generator=torch.Generator().manual_seed(0))
    update = fedsgd_update(model, x, torch.zeros(6, dtype=torch.long))
    with pytest.raises(NotApplicableError) as err:
        Spear().run(model, update, shape=shape)
    text = str(err.value)
    assert "below the layer width 5" in text and "below the input dimension 4" in text


def test_rank_deficiency_reports_the_rank(digits):
    """With ``duplicates='refuse'`` (the behaviour before issue 19) a duplicate is refused, naming
    the rank; the default merges it (test_duplicate_pair_is_recovered)."""
    model, truth, x = _setup(digits, 4)
    x = torch.cat([x[:3], x[:1]])             # a duplicate: rank 3 < 4
    update = fedsgd_update(model, x, torch.cat([truth.labels[:3], truth.labels[:1]]))
    with pytest.raises(NotApplicableError, match=r"numerical rank 3 < batch size 4"):
        Spear(duplicates="refuse").run(model, update, shape=digits.shape)


def test_bad_options_and_shape(digits):
    with pytest.raises(ConfigError, match="method"):
        Spear(method="magic")
    with pytest.raises(ConfigError, match="tau"):
        Spear(tau=1.5)
    model, truth, x = _setup(digits, 2)
    update = fedsgd_update(model, x, truth.labels)
    with pytest.raises(ConfigError, match="input shape"):
        Spear().run(model, update, shape=(1, 4, 4))


def test_assemble_recovers_scale_and_sign():
    W, bias, X, G, L, R = _synthetic()
    Q = L.T @ G
    q_hat = Q / Q.norm(dim=0) * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    X_hat, G_hat = assemble(L, R, G.sum(1), q_hat)
    assert torch.allclose(X_hat, X, atol=1e-10) and torch.allclose(G_hat, G, atol=1e-10)


def test_sampling_finds_every_direction_and_dedups():
    W, bias, X, G, L, R = _synthetic(m=80, r=4)
    alive = L.norm(dim=1) > 1e-9
    tol = Tolerances(zero=1e-9, null=1e-14)
    pool = Candidates(4)
    g = torch.Generator().manual_seed(0)
    pool.add(*sample_directions(L, alive, 3000, tol, g))
    assert pool.add(pool.q.clone(), pool.masks.clone(), pool.counts.clone()) == 0
    true = (L.T @ G) / (L.T @ G).norm(dim=0)
    assert len(pool) == 4 and ((pool.q @ true).abs().max(0).values > 1 - 1e-9).all()


def test_null_directions_rejects_two_dimensional_kernel():
    W, bias, X, G, L, R = _synthetic(m=80, r=4)
    zero = G.abs() < 1e-12
    both = zero[:, 0] & zero[:, 1]                        # rows dead for samples 0 and 1: 2-D kernel
    tol = Tolerances(zero=1e-9, null=1e-14)
    _, ok = null_directions(L, torch.stack([zero[:, 0], both]), tol)
    assert ok.tolist() == [True, False]


@pytest.mark.parametrize("missing", [1, 2])
def test_completion_of_missing_directions(missing):
    W, bias, X, G, L, R = _synthetic(m=60, r=5, n=10, seed=4)
    true = ((L.T @ G) / (L.T @ G).norm(dim=0)).T
    alive = L.norm(dim=1) > 1e-9
    tol = Tolerances(zero=1e-9, null=1e-14)
    complete = complete_last if missing == 1 else complete_pair
    found = complete(true[missing:], L, R, W, bias, alive, tol)
    hits = (found @ true[:missing].T).abs().max(0).values
    assert (hits > 1 - 1e-9).all()


def test_row_ratios_and_input_logits():
    """A neuron that fires for one sample only gives that sample exactly; logits favour off rows."""
    from gradleak.attacks.spear.hybrid import input_logits, row_ratio_inputs

    W, bias, X, G, L, R = _synthetic(m=80, r=3, n=8, seed=1)
    single = ((G != 0).sum(1) == 1).nonzero().flatten()
    assert len(single) > 0
    ratios = row_ratio_inputs(G[single] @ X, G[single].sum(1), torch.ones(len(single), dtype=torch.bool))
    assert (torch.cdist(ratios, X).min(1).values < 1e-10).all()
    logits = input_logits(X[:1], W, bias)
    z = X[:1] @ W.T + bias
    assert logits[0, z[0].argmin()] == logits.max()
