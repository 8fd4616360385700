"""GIFD: Generative Gradient Inversion with Feature Domain optimisation (Fang, Chen, Wang, Wang,
Xia; ICCV 2023; arXiv 2308.04699), plus a label mapping of gradleak's own design for priors
whose classes differ from the task's (the extension, arXiv 2604.00955, names such a mapping in its
abstract; its method was not available, see ``label_map.py``).

Threat model: honest-but-curious server with the model's weights, one (possibly defended) FedSGD
gradient or one-step FedAvg delta, and a class-conditional generator trained on public data (it
may be out of distribution: other classes, another domain). It may copy the defense's
deterministic part onto its trial gradients (``transform``: the adaptive attack). Needs: a
generator whose images fit the model's input; labels known or restored from the last linear layer.

Algorithm (the official code's): the generator is a chain of stages ``G = G_N ∘ … ∘ G_0``.
Stage 0 optimises the latent ``z`` with Adam and projects it back to its initial norm after each
step. Stage k optimises the input feature ``h_k`` of ``G_k``, started at ``G_{k-1}(h_{k-1})``
of the same restart, projected after each step onto the l1 ball of radius ``r_k`` around its
start (radii grow with depth). Loss: ``1 − cos(T(∇θ L(x̂, y)), g*) + α_TV·TV(x̂) + α_norm·‖x̂‖₂/(HW)``
with Adam at lr 0.1 under a warm-up + cosine ramp restarted every stage. Restarts are
independent chains, all run as one batch (each chain holds the client's B images; in ``run_many``
every client's chains join the batch, after each client's own label mapping). After each
stage every restart is scored by the gradient loss alone; the output is the stage and restart
with the lowest score (the official code returns the *last* restart's image — fixed here).

Radii: ``radius_mode="relative"`` (default, gradleak's) takes ``r_k = radii[k-1] · ‖h_k^0‖₁`` per
image, so one setting fits any generator; ``"absolute"`` uses ``radii`` as they are (the paper's
BigGAN radii are ``1000, 2000, 2500, …, 7500`` [CODE]). The default relative radii were chosen on
``validation`` digits (``bench/tables/gifd_tune.toml``, ``docs/results/gifd.md``).

What is the paper's and what is ours: the stages, the spherical and l1-ball projections, the
loss, the lr ramp and the restart selection are the official code's [CODE]; relative radii, the
label mapping, returning the best restart's image (the code returns the last one) and counting
the mapping's latent searches in ``evaluations`` are gradleak's.

Presets: ``paper`` is the official BigGAN configuration as far as it fits a generator with fewer
stages: 1000 steps per stage, 4 restarts, lr 0.1, α_TV 1e-4, α_norm 1e-6, absolute radii 1000,
2000, 2500, … [CODE ``configs_biggan.yml``], no label mapping [CODE: the released code has none].

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> from gradleak.generative.dcgan import ConditionalDCGAN
    >>> model = build_model("lenet", shape=(1, 28, 28), num_classes=10, seed=0)
    >>> update = fedsgd_update(model, torch.rand(1, 1, 28, 28), torch.tensor([3]))
    >>> gen = ConditionalDCGAN(width=4)
    >>> rec = GIFD(generator=gen, steps=3, restarts=2).run(model, update, shape=(1, 28, 28))
    >>> rec.inputs.shape, rec.labels.tolist(), len(rec.info["stage_losses"])
    (torch.Size([1, 1, 28, 28]), [3], 3)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradleak.attacks.base import Attack
from gradleak.attacks.gifd.l1_ball import project_to_ball_around
from gradleak.attacks.gifd.label_map import map_labels, parse_label_map
from gradleak.core.device import model_device
from gradleak.core.errors import ConfigError
from gradleak.core.seeding import attack_generator
from gradleak.core.types import ClientUpdate, Progress, Reconstruction, TrialTransform
from gradleak.generative.base import Generator, check_compatible
from gradleak.generative.hub import load_generator
from gradleak.inversion.gradients import TrialGradients, observed_gradient
from gradleak.inversion.losses import GradientDistance
from gradleak.inversion.optimize import PROGRESS_CALLS, Adam
from gradleak.inversion.priors import total_variation
from gradleak.labels.resolve import resolve_labels

RADII = tuple(0.5 * k for k in range(1, 13))
"""Default relative radii for stages 1, 2, …: ``0.5·k`` times the start feature's l1 norm, the
setting that scored best on ``validation`` digits among the candidates of
``bench/tables/gifd_tune.toml`` (``docs/results/gifd.md``)."""
PAPER_RADII = (1000.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0, 4500.0, 5000.0, 5500.0, 6000.0,
               6500.0, 7000.0, 7500.0)
"""The official BigGAN configuration's absolute radii for stages 1, 2, … (``configs_biggan.yml``)."""


def ramp(t: float) -> float:
    """GIFD's lr factor at progress ``t = step/steps``: cosine ramp-down over the last 75 %, warm-up 5 %."""
    r = min(1.0, (1.0 - t) / 0.75)
    return (0.5 - 0.5 * math.cos(r * math.pi)) * min(1.0, t / 0.05)


def sphere(z: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Rescale each latent (last dim) to the given norms (GIFD's spherical projection of stage 0)."""
    return z * (norm / z.norm(dim=-1, keepdim=True).clamp(min=1e-12))


@dataclass
class GIFDResult:
    """Everything the search found: per-stage images and scores, and the chosen stage and restart.

    ``stage_images[k]`` is the best restart's images after stage ``k``; ``stage_losses[k]`` the
    gradient loss of every restart after stage ``k``.
    """

    labels: torch.Tensor
    classes: torch.Tensor
    stage_images: dict[int, torch.Tensor]
    stage_losses: dict[int, list[float]]
    best_stage: int
    best_restart: int
    history: list[float] = field(default_factory=list)
    ball_use: dict[int, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class GIFD(Attack):
    """GIFD: latent search, then each intermediate feature of the generator in an l1 ball.

    Args:
        generator: a shipped prior name (``mnist-dcgan``), a weights file, or a Generator.
        steps: Adam steps per stage (the paper: 1000).
        stages: which stages to search, in order (default all: ``0 .. num_stages-1``).
        radii: l1 radius of each stage ``1, 2, …`` (relative or absolute, see ``radius_mode``).
        radius_mode: ``relative`` (fraction of the start feature's l1 norm) or ``absolute``.
        restarts: independent chains (the paper: 4), optimised as one batch.
        lr: Adam learning rate (per stage, with the warm-up + cosine ramp).
        tv: weight of total variation (1e-4); norm: weight of the image-norm term (1e-6).
        label_map: ``auto``, ``search``, ``none``, or a JSON file task label → generator class.
        map_steps: Adam steps of the short latent search that scores each class for ``label_map``.
        labels: ``auto``, ``known``, ``restore`` or a label method name.
        seed: seeds the latent starts.
        transform: the adaptive attacker's copy of the defense, applied to trial gradients.
    """

    name = "gifd"
    presets = {"tiny": {"steps": 2, "restarts": 1, "map_steps": 1},
               "paper": {"steps": 1000, "restarts": 4, "lr": 0.1, "tv": 1e-4, "norm": 1e-6,
                         "radii": list(PAPER_RADII), "radius_mode": "absolute", "label_map": "none"}}
    paper_sources = {
        "steps": "[CODE] 1000 Adam steps per stage (configs_biggan.yml)",
        "restarts": "[CODE] 4 restarts",
        "lr": "[CODE] lr_io 0.1 with the warm-up + cosine ramp",
        "tv": "[CODE] 1e-4",
        "norm": "[CODE] 1e-6",
        "radii": "[CODE] max_radius_gen_out of configs_biggan.yml (entry k for stage k >= 1)",
        "radius_mode": "[CODE] absolute l1 radii",
        "label_map": "[CODE] the released code conditions on the inferred label itself (no mapping)",
    }
    default_tuned_on = "validation: relative radii chosen on validation digits by bench/tables/gifd_tune.toml"
    needs_labels = True
    takes_labels = True
    needs_prior = True
    supports_adaptive = True
    batches_clients = True
    progress_unit = "steps, all stages"

    def __init__(self, *, generator: str | Generator = "mnist-dcgan", steps: int = 1000,
                 stages: Sequence[int] | None = None, radii: Sequence[float] = RADII,
                 radius_mode: str = "relative", restarts: int = 4, lr: float = 0.1, tv: float = 1e-4,
                 norm: float = 1e-6, label_map: str | Path | dict[int, int] = "auto", map_steps: int = 50,
                 labels: str = "auto", seed: int = 0, transform: TrialTransform | None = None) -> None:
        stages = (stages,) if isinstance(stages, int) else stages  # -p stages=2 gives an int
        radii = (radii,) if isinstance(radii, (int, float)) else radii
        problems = []
        if steps < 1 or restarts < 1 or map_steps < 1:
            problems.append(f"steps, restarts and map_steps must be >= 1, got {steps}, {restarts}, {map_steps}")
        if not lr > 0 or tv < 0 or norm < 0:
            problems.append(f"lr must be > 0, tv and norm >= 0, got lr={lr}, tv={tv}, norm={norm}")
        if radius_mode not in ("relative", "absolute"):
            problems.append(f"radius_mode must be 'relative' or 'absolute', got {radius_mode!r}")
        if any(r < 0 for r in radii):
            problems.append(f"radii must be >= 0, got {list(radii)}")
        if stages is not None and (list(stages) != sorted(set(stages)) or not stages or min(stages) < 0):
            problems.append(f"stages must be distinct non-negative indices in increasing order, got {stages}")
        if problems:
            raise ConfigError("gifd: " + "; ".join(problems))
        try:
            parse_label_map(label_map)
        except ConfigError as err:
            raise ConfigError(f"gifd: {err}") from None
        self.generator, self.steps, self.restarts, self.lr = generator, steps, restarts, lr
        self.stages = tuple(stages) if stages is not None else None
        self.radii, self.radius_mode = tuple(float(r) for r in radii), radius_mode
        self.tv, self.norm, self.label_map, self.map_steps = tv, norm, label_map, map_steps
        self.labels, self.seed, self.transform = labels, seed, transform

    def reconstruct_many(self, model: nn.Module, updates: Sequence[ClientUpdate], *, shape: Sequence[int],
                         progress: Progress | None = None) -> list[Reconstruction]:
        return [Reconstruction(res.stage_images[res.best_stage], res.labels, res.history, info=res.info)
                for res in self.search_many(model, updates, shape=shape, progress=progress)]

    def search(self, model: nn.Module, update: ClientUpdate, *, shape: Sequence[int],
               progress: Progress | None = None) -> GIFDResult:
        """Run every stage and return the per-stage results (``reconstruct`` keeps the best)."""
        return self.search_many(model, [update], shape=shape, progress=progress)[0]

    def search_many(self, model: nn.Module, updates: Sequence[ClientUpdate], *, shape: Sequence[int],
                    progress: Progress | None = None) -> list[GIFDResult]:
        """:meth:`search` for several clients (same batch size): label mapping per client, then every
        client's chains as one batch (client-major rows), each client's results its own."""
        device = model_device(model)
        gen = load_generator(self.generator)
        if model_device(gen) != device:
            gen = copy.deepcopy(gen).to(device)
        check_compatible(gen, shape)  # classes are mapped, so only the image shape must fit
        stages = self.stages if self.stages is not None else tuple(range(gen.num_stages))
        if stages[-1] >= gen.num_stages or len(self.radii) < max(stages):
            raise ConfigError(f"gifd: the generator has stages 0..{gen.num_stages - 1} and needs a radius for "
                              f"each searched stage >= 1; got stages {list(stages)}, {len(self.radii)} radii")
        shape = tuple(int(s) for s in shape)
        n, b, r = len(updates), updates[0].num_examples, self.restarts
        targets = [observed_gradient(model, u) for u in updates]
        resolved = [resolve_labels(model, u, self.labels, shape=shape) for u in updates]
        starts, classes, map_infos, mapping_evals = [], [], [], [0] * n
        for c, (target, (labels, _)) in enumerate(zip(targets, resolved)):  # each client: own seeded map and starts
            rng = attack_generator(self.seed)
            one = self._grad_loss(model, [target], labels[None], b, shape)

            def class_scores(cands: torch.Tensor, one=one, rng=rng, c=c) -> torch.Tensor:  # short latent search
                reps = max(1, min(2, r))
                cls = cands.to(device).repeat_interleave(reps, 0).reshape(-1)
                z = torch.randn((cls.numel(), gen.latent_dim), generator=rng).to(device)
                z, _, _ = self._stage(gen, 0, z, cls, None, one, cls.numel() // b, self.map_steps, None)
                mapping_evals[c] += (self.map_steps + 1) * (cls.numel() // b)
                with torch.enable_grad():
                    loss = one(gen(z, cls).detach(), cls.numel() // b).detach()
                return loss.reshape(-1, reps).min(1).values.cpu()

            found, info = map_labels(labels.cpu(), gen, self.label_map, class_scores)  # bookkeeping on the CPU
            classes.append(found.to(device))
            map_infos.append(info)
            starts.append(torch.randn((r * b, gen.latent_dim), generator=rng).to(device))
        grad_loss = self._grad_loss(model, targets, torch.stack([lab for lab, _ in resolved]), b, shape)
        cls = torch.cat([c.repeat(r) for c in classes])  # client-major, chain-major: (N*R*B,)
        h = torch.cat(starts)
        at, total = 0, self.steps * len(stages)
        images: list[dict] = [{} for _ in range(n)]
        losses: list[dict] = [{} for _ in range(n)]
        best_restarts: list[dict] = [{} for _ in range(n)]
        ball_use: list[dict] = [{} for _ in range(n)]
        history: list[list[float]] = [[] for _ in range(n)]
        for i, k in enumerate(stages):
            with torch.no_grad():
                for j in range(at, k):
                    h = gen.stage_forward(j, h, cls)
            at = k
            radius = None
            if k > 0:
                scale = h.flatten(1).abs().sum(1) if self.radius_mode == "relative" else torch.ones(
                    len(h), device=device)
                radius = self.radii[k - 1] * scale

            def report(step: int, loss: float, offset: int = i * self.steps) -> None:
                if progress is not None:
                    progress(offset + step, total, loss)

            start = h
            h, hist, x = self._stage(gen, k, h, cls, radius, grad_loss, n * r, self.steps, report)
            with torch.enable_grad():
                score = torch.nan_to_num(grad_loss(x, n * r).detach(), nan=float("inf")).cpu()
            hist = torch.nan_to_num(hist, nan=float("inf"))
            used = None if radius is None else ((h - start).flatten(1).abs().sum(1) / radius.clamp(min=1e-12)).cpu()
            for c in range(n):
                rows = slice(c * r, (c + 1) * r)
                if used is not None:
                    ball_use[c][k] = float(used[c * r * b:(c + 1) * r * b].max())
                history[c] += hist[:, rows].min(1).values.tolist()
                best_restarts[c][k] = int(score[rows].argmin())
                images[c][k] = x.reshape(n * r, b, *shape)[c * r + best_restarts[c][k]].clamp(0, 1)
                losses[c][k] = [float(v) for v in score[rows]]
        results = []
        for c, (labels, how) in enumerate(resolved):
            best_stage = min(losses[c], key=lambda k, c=c: min(losses[c][k]))
            best_restart = best_restarts[c][best_stage]
            info = {"labels_from": how, **map_infos[c],
                    "stage_losses": {str(k): v for k, v in losses[c].items()},
                    "best_stage": best_stage, "best_restart": best_restart,
                    "final_loss": losses[c][best_stage][best_restart],
                    # the mapping's latent searches count towards the budget, and so does the score
                    # of every stage's last iterate (one per restart)
                    "evaluations": mapping_evals[c] + (self.steps + 1) * r * len(stages),
                    "mapping_evaluations": mapping_evals[c], "ball_use": ball_use[c],
                    "generator": self.generator if isinstance(self.generator, str) else type(self.generator).__name__}
            results.append(GIFDResult(labels, classes[c], images[c], losses[c], best_stage, best_restart,
                                      history[c], ball_use[c], info))
        return results

    def _grad_loss(self, model: nn.Module, targets: list, labels: torch.Tensor, b: int,
                   shape: tuple[int, ...]) -> Any:
        """``loss(x (rows·B, C, H, W), rows) -> (rows,)``: each row's cosine distance to its client's target."""
        trial, dist = TrialGradients(model, self.transform), GradientDistance(targets, "cosine")

        def grad_loss(x: torch.Tensor, rows: int) -> torch.Tensor:
            y = labels.repeat_interleave(rows // len(targets), 0)
            return dist(trial(x.reshape(rows, b, *shape), y, factored=True))

        return grad_loss

    def _stage(self, gen: Generator, k: int, h0: torch.Tensor, cls: torch.Tensor, radius: torch.Tensor | None,
               grad_loss: Any, n: int, steps: int, report: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Optimise the input of stage ``k`` for ``steps``; return it, each row's loss per step, its images."""
        center = h0.detach()
        norm0 = center.norm(dim=-1, keepdim=True) if k == 0 else None
        h = center.clone().requires_grad_(True)
        opt = Adam(h)
        hw = gen.image_shape[-1] * gen.image_shape[-2]
        history = torch.empty((steps, n), device=h.device)
        every = max(1, steps // PROGRESS_CALLS)
        for step in range(steps):
            x = gen.forward_from(k, h, cls)
            x5 = x.reshape(n, -1, *x.shape[1:])
            loss = grad_loss(x, n) + self.tv * total_variation(x5) + self.norm * x5.flatten(2).norm(dim=2).mean(1) / hw
            (g,) = torch.autograd.grad(loss.sum(), [h])
            opt.step(g, self.lr * ramp(step / steps))
            with torch.no_grad():
                history[step] = loss
                if k == 0:
                    h.copy_(sphere(h, norm0))
                elif radius is not None:
                    h.copy_(project_to_ball_around(h, center, radius))
            if report is not None and ((step + 1) % every == 0 or step + 1 == steps):
                report(step + 1, float(torch.nan_to_num(history[step], nan=float("inf")).min()))
        with torch.no_grad():
            x = gen.forward_from(k, h.detach(), cls)
        return h.detach(), history.cpu(), x
