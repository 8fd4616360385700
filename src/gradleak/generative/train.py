"""Train a class-conditional DCGAN prior on an embedded dataset (``gradleak prior train``).

Every random choice (initialisation, shuffling, latents) flows from ``seed``, so the command
reproduces the shipped weights. Sample grids (one row per class) are written as it trains.

Example:
    >>> from gradleak.generative.train import parse_classes
    >>> parse_classes("0-4"), parse_classes("1,3,5")
    ((0, 1, 2, 3, 4), (1, 3, 5))
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from gradleak.core.errors import ConfigError
from gradleak.core.limits import MAX_EPOCHS, check_seed
from gradleak.core.validate import int_problem, real_problem
from gradleak.generative.dcgan import ConditionalDCGAN, Discriminator

log = logging.getLogger(__name__)

Progress = Callable[[int, int, float], None]


def parse_classes(text: str | None, num_classes: int = 10) -> tuple[int, ...]:
    """``"0-9"``, ``"0-4"``, ``"1,3,5"`` (or ``None``: all classes) → sorted tuple of labels."""
    if text is None or text == "":
        return tuple(range(num_classes))
    out: set[int] = set()
    try:
        for part in text.split(","):
            lo, dash, hi = part.strip().partition("-")
            out.update(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    except ValueError:
        raise ConfigError(f"classes must look like '0-9' or '1,3,5', got {text!r}") from None
    bad = sorted(c for c in out if not 0 <= c < num_classes)
    if bad or not out:
        raise ConfigError(f"classes {bad or text!r} are not labels of a {num_classes}-class dataset")
    return tuple(sorted(out))


def sample_grid(generator: ConditionalDCGAN, path: str | Path, *, per_class: int = 10, seed: int = 0,
                scale: int = 2) -> Path:
    """Write a PNG with one row per generator class and ``per_class`` samples per row."""
    gen = torch.Generator().manual_seed(seed)
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    with torch.no_grad():
        y = torch.arange(generator.num_classes).repeat_interleave(per_class)
        x = generator(torch.randn(len(y), generator.latent_dim, generator=gen).to(device), y.to(device)).cpu()
    generator.train(was_training)
    c, h, w = x.shape[1:]
    grid = x.reshape(generator.num_classes, per_class, c, h, w).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(c, generator.num_classes * h, per_class * w)[0]
    img = Image.fromarray((grid.clamp(0, 1) * 255).round().byte().numpy(), mode="L")
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def recalibrate_batchnorm(generator: ConditionalDCGAN, *, gen: torch.Generator, batches: int = 20,
                          batch_size: int = 64) -> None:
    """Re-estimate BatchNorm running statistics for (averaged) weights from random latents and classes.

    The moving average of the weights does not come with matching BatchNorm statistics, so they
    are recomputed as the plain average over ``batches`` forward passes; leaves it in eval mode.
    """
    bns = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    generator.train()
    device = next(generator.parameters()).device
    with torch.no_grad():
        for _ in range(batches):
            y = torch.randint(generator.num_classes, (batch_size,), generator=gen)
            generator(torch.randn(batch_size, generator.latent_dim, generator=gen).to(device), y.to(device))
    for m in bns:
        m.momentum = 0.1
    generator.eval()


def save_generator(generator: ConditionalDCGAN, path: str | Path, *, extra: dict | None = None,
                   half: bool = True) -> Path:
    """Save weights (fp16 by default) and the constructor config as safetensors metadata."""
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
             for k, v in generator.state_dict().items()}
    meta = {"config": json.dumps(generator.config()), "extra": json.dumps(extra or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".gradleak-tmp-{os.getpid()}-{path.name}")
    try:
        save_file(state, str(tmp), metadata=meta)
        os.replace(tmp, path)  # the weights appear whole, or not at all
    finally:
        tmp.unlink(missing_ok=True)
    return path


def train_prior(
    dataset: str = "mnist",
    *,
    split: str = "train",
    classes: Sequence[int] | None = None,
    epochs: int = 40,
    batch_size: int = 64,
    width: int = 32,
    lr: float = 2e-4,
    seed: int = 0,
    out: str | Path | None = None,
    samples_dir: str | Path | None = None,
    sample_every: int = 5,
    ema: float = 0.0,
    progress: Progress | None = None,
    device: Any = None,
) -> ConditionalDCGAN:
    """Train a conditional DCGAN (non-saturating loss + AC term) on an embedded dataset.

    Args:
        dataset: registered dataset of 1×28×28 images (``mnist``).
        split: ``train`` (the training split of :mod:`gradleak.data.splits`, so the validation and
            attack splits stay unseen by the prior) or ``all`` (then the prior has seen attack images:
            its numbers are not held-out numbers).
        classes: labels to train on (default all); the generator's class ``k`` is ``classes[k]``.
        epochs: passes over the (filtered) data.
        batch_size: mini-batch size.
        width: generator/discriminator width.
        lr: Adam learning rate (betas 0.5, 0.999) of both networks.
        seed: seeds initialisation, shuffling and latents.
        out: where to save the safetensors weights (optional).
        samples_dir: where to write ``epoch_NNN.png`` sample grids (optional).
        sample_every: epochs between sample grids.
        ema: decay of the exponential moving average of the generator's weights (with warm-up
            ``min(ema, (1 + t) / (10 + t))``), which is what is returned, sampled and saved, after
            re-estimating its BatchNorm statistics (0 disables the average).
        progress: ``progress(step, total, generator_loss)``.
        device: where to train (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; default the CPU).
            Random numbers are drawn on the CPU and moved, so the data order and latents are the
            same on every device; the weights agree across devices to float tolerance, not bit for bit.

    Returns:
        the trained generator in eval mode, on the CPU.
    """
    from gradleak.core.device import resolve_device
    from gradleak.data import load_dataset
    from gradleak.data.fingerprint import fingerprint, image_hashes
    from gradleak.data.splits import load_splits

    dev = resolve_device("cpu" if device is None else device)
    problems = [p for p in (
        int_problem("epochs", epochs, low=1, high=MAX_EPOCHS), int_problem("batch_size", batch_size, low=1),
        int_problem("width", width, low=1, high=4096), int_problem("sample_every", sample_every, low=1),
        real_problem("lr", lr, low=0, low_open=True), real_problem("ema", ema, low=0, high=0.999999)) if p]
    if split not in ("train", "all"):
        problems.append(f"split must be 'train' or 'all', got {split!r}")
    if problems:
        raise ConfigError("prior training: " + "; ".join(problems))
    check_seed(seed)
    data = load_splits(dataset, {}).train if split == "train" else load_dataset(dataset)
    if data.shape != (1, 28, 28):
        raise ConfigError(f"the DCGAN prior makes 1×28×28 images; dataset {dataset!r} has shape "
                          f"{data.shape} (use an attack without a prior, or a dataset like 'mnist')")
    labels = tuple(classes) if classes is not None else tuple(range(data.num_classes))
    if not labels or any(not isinstance(c, int) or not 0 <= c < data.num_classes for c in labels):
        raise ConfigError(f"classes must be labels of {dataset!r} (0..{data.num_classes - 1}), got {list(labels)}")
    keep = torch.isin(data.labels, torch.tensor(labels))
    x_all = data.inputs[keep]
    table = torch.full((data.num_classes,), -1, dtype=torch.long)
    table[torch.tensor(labels)] = torch.arange(len(labels))
    y_all = table[data.labels[keep]].to(dev)
    x_all = x_all.to(dev)
    if epochs < 1 or batch_size < 1 or len(x_all) < batch_size:
        raise ConfigError(f"need epochs >= 1 and 1 <= batch_size <= {len(x_all)} examples, got "
                          f"epochs={epochs}, batch_size={batch_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = ConditionalDCGAN(len(labels), width=width, class_labels=labels)
        d = Discriminator(len(labels), width=width)
    g, d = g.to(dev), d.to(dev)
    avg = copy.deepcopy(g)
    gen = torch.Generator().manual_seed(seed + 1)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    n, per_epoch = len(x_all), len(x_all) // batch_size
    total, step = epochs * per_epoch, 0
    log.info("training DCGAN prior on %d %s digits of classes %s for %d epochs", n, dataset, labels, epochs)
    for epoch in range(1, epochs + 1):
        g.train()
        order = torch.randperm(n, generator=gen).to(dev)
        for i in range(per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            real, y = x_all[idx], y_all[idx]
            z = torch.randn(len(idx), g.latent_dim, generator=gen).to(dev)
            y_fake = torch.randint(len(labels), (len(idx),), generator=gen).to(dev)
            fake = g(z, y_fake)
            # discriminator: real → 1, fake → 0, plus class cross-entropy on real digits
            lr_, cr = d(real, y)
            lf, _ = d(fake.detach(), y_fake)
            loss_d = F.softplus(-lr_).mean() + F.softplus(lf).mean() + F.cross_entropy(cr, y)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # generator: non-saturating loss plus class cross-entropy on its samples
            lf, cf = d(fake, y_fake)
            loss_g = F.softplus(-lf).mean() + F.cross_entropy(cf, y_fake)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            if ema:
                with torch.no_grad():  # moving average with warm-up, so the random init fades fast
                    decay = min(ema, (1 + step) / (10 + step))
                    for pa, pg in zip(avg.parameters(), g.parameters()):
                        pa.lerp_(pg, 1 - decay)
            step += 1
            if progress is not None:
                progress(step, total, loss_g.item())
        if samples_dir is not None and (epoch % sample_every == 0 or epoch == epochs):
            if ema:
                recalibrate_batchnorm(avg, gen=torch.Generator().manual_seed(seed + 2))
            sample_grid(avg if ema else g, Path(samples_dir) / f"epoch_{epoch:03d}.png", seed=seed)
        log.info("epoch %d/%d: loss_d %.3f loss_g %.3f", epoch, epochs, loss_d.item(), loss_g.item())
    if ema and samples_dir is None:  # with sample grids, the last epoch's grid already recalibrated it
        recalibrate_batchnorm(avg, gen=torch.Generator().manual_seed(seed + 2))
    final = (avg if ema else g.eval()).cpu()
    if out is not None:
        save_generator(final, out, extra={"dataset": dataset, "split": split, "classes": list(labels),
                                        "epochs": epochs, "batch_size": batch_size, "lr": lr, "ema": ema,
                                        "seed": seed, "train_images": len(x_all),
                                        "train_fingerprint": fingerprint(image_hashes(x_all))})
    return final
