"""Metrics: PSNR/SSIM/MSE conventions, Hungarian matching, label accuracy."""

from __future__ import annotations

import math

import torch

from gradleak.core.types import GroundTruth, Reconstruction
from gradleak.metrics import evaluate, label_accuracy, match, psnr, ssim


def test_psnr_peak_one():
    assert psnr(0.01) == 20.0
    assert math.isinf(psnr(0.0))


def test_matching_undoes_a_permutation():
    x = torch.rand(5, 1, 6, 6)
    perm = torch.tensor([3, 0, 4, 1, 2])
    order = match(x[perm], x)
    assert torch.equal(x[perm][order], x)


def test_evaluate_exact_and_noisy():
    x = torch.rand(3, 1, 8, 8)
    truth = GroundTruth(x, torch.tensor([1, 1, 2]))
    exact = evaluate(Reconstruction(x[[2, 0, 1]], torch.tensor([2, 1, 1])), truth)
    assert exact["exact_fraction"] == 1.0 and exact["mse"] == 0.0 and exact["label_accuracy"] == 1.0
    assert exact["psnr"] == 200.0 and abs(exact["ssim"] - 1.0) < 1e-9
    noisy = evaluate(Reconstruction((x + 0.1).clamp(0, 1), None), truth)
    assert noisy["exact_fraction"] == 0.0 and noisy["label_accuracy"] is None
    assert 15 < noisy["psnr"] < 30 and noisy["ssim"] < 1.0 and noisy["lpips"] is None


def test_exact_threshold_is_per_image():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0, 0, 0, 0] = 2e-4
    y[1, 0, 0, 0] = 5e-5
    assert evaluate(Reconstruction(y, None), GroundTruth(x, torch.zeros(2, dtype=torch.long)))[
        "exact_fraction"] == 0.5


def test_label_accuracy_is_multiset_overlap():
    assert label_accuracy(torch.tensor([1, 1, 2, 3]), torch.tensor([1, 2, 2, 3])) == 0.75


def test_ssim_decreases_with_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 16, 16, generator=gen)
    values = [ssim((x + s * torch.randn(x.shape, generator=gen)).clamp(0, 1), x) for s in (0.01, 0.1, 0.3)]
    assert values[0] > values[1] > values[2]
