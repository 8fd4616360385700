"""``reconstruction.png``: each true image above its matched reconstruction, labelled and scored.

Images are enlarged by an integer factor (nearest neighbour, so pixels stay visible) to at
least :data:`MIN_SIDE` pixels; under each pair the true and recovered label and that pair's
PSNR are printed with Pillow's default font. A wrong recovered label is drawn in red. Without
ground truth (a saved update) only the reconstructions and their labels are drawn.

Example:
    >>> import torch
    >>> img = comparison_figure(torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8), true_labels=[1, 2, 3],
    ...                         recovered_labels=[1, 2, 4], psnrs=[20.0, 30.0, 200.0], title="demo")
    >>> img.size[0] >= 3 * MIN_SIDE, img.mode
    (True, 'RGB')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

MIN_SIDE = 112
"""Smallest displayed side of one image, in pixels."""

COLUMNS = 8
"""Pairs per row of the figure; longer batches wrap."""

PAD, GAP, LINE = 10, 4, 15
RED, BLACK, GREY = (200, 30, 30), (0, 0, 0), (90, 90, 90)


def _font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _to_array(batch: torch.Tensor, scale: int) -> np.ndarray:
    imgs = batch.detach().float().clamp(0, 1)
    imgs = imgs.repeat(1, 3, 1, 1) if imgs.shape[1] == 1 else imgs[:, :3]
    imgs = imgs.repeat_interleave(scale, 2).repeat_interleave(scale, 3).permute(0, 2, 3, 1).numpy()
    return (imgs * 255).round().astype(np.uint8)


def _fmt_psnr(value: float) -> str:
    return "PSNR exact" if value >= 199.0 else f"PSNR {value:.1f} dB"


def comparison_figure(truth: torch.Tensor | None, recovered: torch.Tensor, *,
                      true_labels: Sequence[int] | None = None,
                      recovered_labels: Sequence[int] | None = None,
                      psnrs: Sequence[float] | None = None, title: str = "",
                      labels_paired: bool = True) -> Image.Image:
    """The figure of a run (``recovered[i]`` is the reconstruction matched to ``truth[i]``).

    Args:
        truth: the true images ``(B, C, H, W)`` in [0, 1], or ``None`` for a saved update.
        recovered: the reconstructions in matched order.
        true_labels, recovered_labels: per image (``None``: not shown).
        psnrs: per pair, in dB (values ≥ 199 print as "exact").
        title: a line at the top.
        labels_paired: the recovered labels belong to the images (optimisation attacks); when
            ``False`` (a label multiset restored separately, e.g. SPEAR's) they are listed once
            under the figure instead of under each image.
    """
    b, _, h, w = recovered.shape
    scale = max(1, math.ceil(MIN_SIDE / max(h, w)))
    side_h, side_w = h * scale, w * scale
    rows = [recovered] if truth is None else [truth, recovered]
    arrays = [_to_array(r, scale) for r in rows]
    font, small = _font(12), _font(11)
    captions = [_captions(i, truth is not None, true_labels, recovered_labels if labels_paired else None, psnrs)
                for i in range(b)]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((measure.textlength(t, font=font) for c in captions for t, _ in c), default=0)
    cell_w = max(side_w, int(text_w) + 4)
    cell_h = len(rows) * side_h + (len(rows) - 1) * GAP + GAP + LINE * max(len(c) for c in captions)
    label_w = 0 if truth is None else int(max(measure.textlength(t, font=small) for t in ("truth", "recovered"))) + 8
    cols = min(b, COLUMNS)
    blocks = math.ceil(b / cols)
    footer = [] if labels_paired or recovered_labels is None else [
        f"recovered labels (restored as a multiset, not paired with images): {sorted(recovered_labels)}"]
    top = PAD + (LINE + 4 if title else 0)
    width = max(PAD * 2 + label_w + cols * cell_w + (cols - 1) * PAD,
                int(max((measure.textlength(t, font=font) for t in [title, *footer]), default=0)) + 2 * PAD)
    height = top + blocks * cell_h + (blocks - 1) * PAD + PAD + LINE * len(footer)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((PAD, PAD), title, fill=BLACK, font=font)
    for i in range(b):
        block, col = divmod(i, cols)
        x0 = PAD + label_w + col * (cell_w + PAD)
        y0 = top + block * (cell_h + PAD)
        for k, arr in enumerate(arrays):
            y = y0 + k * (side_h + GAP)
            canvas.paste(Image.fromarray(arr[i]), (x0 + (cell_w - side_w) // 2, y))
            if col == 0 and label_w:
                draw.text((PAD, y + side_h // 2 - 6), ("truth", "recovered")[k], fill=GREY, font=small)
        y = y0 + len(rows) * side_h + (len(rows) - 1) * GAP + GAP
        for text, colour in captions[i]:
            draw.text((x0 + (cell_w - measure.textlength(text, font=font)) / 2, y), text, fill=colour, font=font)
            y += LINE
    for n, text in enumerate(footer):
        draw.text((PAD, height - PAD - LINE * (len(footer) - n)), text, fill=BLACK, font=font)
    return canvas


def _captions(i: int, has_truth: bool, true_labels: Sequence[int] | None,
              recovered_labels: Sequence[int] | None, psnrs: Sequence[float] | None) -> list[tuple[str, tuple]]:
    lines: list[tuple[str, tuple]] = []
    t = None if true_labels is None else int(true_labels[i])
    r = None if recovered_labels is None else int(recovered_labels[i])
    if has_truth and t is not None and r is not None:
        lines.append((f"true {t}, got {r}" + ("" if t == r else " (wrong)"), BLACK if t == r else RED))
    elif t is not None:
        lines.append((f"true label {t}", BLACK))
    elif r is not None:
        lines.append((f"label {r}", BLACK))
    if psnrs is not None:
        lines.append((_fmt_psnr(float(psnrs[i])), BLACK))
    return lines or [("", BLACK)]
