"""Scores of a reconstruction against the truth, after Hungarian matching.

The only place that sees both a :class:`Reconstruction` and a :class:`GroundTruth`.

Example:
    >>> import torch
    >>> from gradleak.core.types import GroundTruth, Reconstruction
    >>> x = torch.rand(2, 1, 8, 8)
    >>> m = evaluate(Reconstruction(x.flip(0), torch.tensor([1, 0])), GroundTruth(x, torch.tensor([0, 1])))
    >>> m["exact_fraction"], m["label_accuracy"], m["mse"]
    (1.0, 1.0, 0.0)
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

import numpy as np
import torch

from gradleak.core.errors import ConfigError
from gradleak.core.types import GroundTruth, Reconstruction

log = logging.getLogger(__name__)
EXACT_TOLERANCE = 1e-4


def psnr(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB for pixels in ``[0, peak]``; ``inf`` for a perfect match."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(peak**2 / mse)


def match(reconstructed: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """The Hungarian assignment minimising pairwise MSE: ``order[i]`` is the reconstruction for truth ``i``."""
    from scipy.optimize import linear_sum_assignment  # imported here: keeps `import gradleak` fast

    a = reconstructed.reshape(reconstructed.shape[0], -1).double()
    b = truth.reshape(truth.shape[0], -1).double()
    cost = torch.cdist(b, a).pow(2).numpy() / a.shape[1]
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean SSIM of two images ``(C, H, W)`` in ``[0, 1]`` (scikit-image, Gaussian-free 7×7 window)."""
    from skimage.metrics import structural_similarity

    a = x.detach().double().permute(1, 2, 0).numpy()
    b = y.detach().double().permute(1, 2, 0).numpy()
    win = min(7, a.shape[0], a.shape[1])
    win -= 1 - win % 2
    if win < 3:
        return float("nan")
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=2, win_size=win))


def label_accuracy(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """Fraction of labels right after optimal matching: the multiset overlap divided by B."""
    overlap = Counter(predicted.tolist()) & Counter(truth.tolist())
    return sum(overlap.values()) / max(len(truth), 1)


def lpips_distance(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """LPIPS (AlexNet) when the ``lpips`` package and its backbone weights exist locally, else ``None``."""
    try:  # the backbone weights cannot be downloaded here; never try the network
        import lpips  # type: ignore[import-not-found]

        net = lpips.LPIPS(net="alex", pretrained=True, verbose=False)
    except Exception as err:  # noqa: BLE001 - any failure means "not available"
        log.debug("LPIPS unavailable: %s", err)
        return None
    with torch.no_grad():
        return float(net(x * 2 - 1, y * 2 - 1).mean())


def evaluate(rec: Reconstruction, truth: GroundTruth, *, with_lpips: bool = False) -> dict[str, Any]:
    """MSE, PSNR (peak 1), SSIM, LPIPS, label accuracy and exact fraction after matching.

    Per-image values are averaged; ``psnr`` is the mean of per-image PSNRs (capped at 200 dB
    so that exact images stay finite in JSON), ``per_image`` lists them.
    """
    if not isinstance(rec, Reconstruction) or not isinstance(truth, GroundTruth):
        raise ConfigError(f"evaluate(rec, truth) takes a Reconstruction and a GroundTruth, got "
                          f"{type(rec).__name__} and {type(truth).__name__}")
    if not isinstance(rec.inputs, torch.Tensor) or rec.inputs.shape != truth.inputs.shape:
        got = tuple(rec.inputs.shape) if isinstance(rec.inputs, torch.Tensor) else type(rec.inputs).__name__
        raise ConfigError(f"reconstruction shape {got} does not match the truth's shape "
                          f"{tuple(truth.inputs.shape)}; score a reconstruction of the same batch")
    if rec.labels is not None and (not isinstance(rec.labels, torch.Tensor) or rec.labels.dim() != 1):
        raise ConfigError("reconstruction labels must be a 1-D tensor or None")
    # scoring runs on the CPU (scipy's matching and scikit-image's SSIM read NumPy arrays)
    rec = Reconstruction(rec.inputs.detach().cpu(), None if rec.labels is None else rec.labels.cpu())
    truth = GroundTruth(truth.inputs.detach().cpu(), truth.labels.cpu())
    order = match(rec.inputs, truth.inputs)
    x_hat = rec.inputs[order].detach().double()
    x = truth.inputs.double()
    err = (x_hat - x).reshape(x.shape[0], -1)
    mses = err.pow(2).mean(1).tolist()
    psnrs = [min(psnr(m), 200.0) for m in mses]
    ssims = [ssim(a, b) for a, b in zip(x_hat, x)]
    exact = (err.abs().max(1).values < EXACT_TOLERANCE).double().mean().item()
    return {
        "mse": float(np.mean(mses)),
        "psnr": float(np.mean(psnrs)),
        "ssim": float(np.nanmean(ssims)) if not all(math.isnan(s) for s in ssims) else None,
        "lpips": lpips_distance(x_hat.float(), x.float()) if with_lpips else None,
        "label_accuracy": None if rec.labels is None else label_accuracy(rec.labels, truth.labels),
        "exact_fraction": exact,
        "per_image": {"psnr": psnrs, "mse": mses, "ssim": ssims},
        "matching": order.tolist(),
    }
