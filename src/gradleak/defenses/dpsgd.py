"""DP-SGD on the client through Opacus: per-sample clipping plus Gaussian noise, with ε reported.

Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang, "Deep Learning with Differential
Privacy" (CCS 2016, arXiv 1607.00133); implemented with Opacus (Yousefpour et al. 2021,
arXiv 2109.12298). Each local step computes per-sample gradients (Opacus's
``GradSampleModule``), clips each to ``clip``, sums them, adds ``N(0, (noise·clip)²)`` and
divides by the expected batch size (Opacus's ``DPOptimizer``). FedSGD is one step on the whole
batch (sampling rate 1); FedAvg takes ``local.num_steps(n)`` steps on Poisson-sampled batches
of expected size ``local.batch_size`` (rate ``q = batch_size / n``). ε for ``delta`` comes from
Opacus's RDP accountant and lands in ``update.meta["privacy"]`` (and the run's metrics).
Give either the noise multiplier ``noise`` or a target ``epsilon`` (the multiplier is then
solved with Opacus's ``get_noise_multiplier``). Opacus refuses BatchNorm (per-sample gradients
are undefined when samples share statistics): such models are refused, or converted to
GroupNorm by Opacus's ``ModuleValidator.fix`` with ``fix_bn=true``. Needs ``pip install
'gradleak[dp]'``.

Example:
    >>> import torch
    >>> from gradleak.models import build_model
    >>> from gradleak.fl import fedsgd_update
    >>> model = build_model("mlp", shape=(1, 8, 8), num_classes=10, seed=0)
    >>> dp = DPSGD(noise=1.0, clip=1.0, seed=0)
    >>> update = dp(fedsgd_update(model, torch.rand(2, 1, 8, 8), torch.tensor([1, 2]), trainer=dp))
    >>> round(update.meta["privacy"]["epsilon"], 1) > 0
    True
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gradleak.core.errors import ConfigError, MissingDependencyError
from gradleak.core.types import ClientUpdate, LocalTraining
from gradleak.defenses.training import TrainingDefense


def _opacus() -> Any:
    try:
        import opacus
    except ImportError as err:
        raise MissingDependencyError("opacus", "dp") from err
    return opacus


def sampling(n: int, local: LocalTraining | None) -> tuple[float, int]:
    """``(sample rate q, steps)`` of DP-SGD: FedSGD is one full-batch step."""
    if local is None:
        return 1.0, 1
    bs = local.batch_size or n
    return min(1.0, bs / n), local.num_steps(n)


@lru_cache(maxsize=128)
def noise_for_epsilon(epsilon: float, delta: float, q: float, steps: int) -> float:
    """The noise multiplier reaching ``(epsilon, delta)`` after ``steps`` steps at rate ``q`` (RDP)."""
    from opacus.accountants.utils import get_noise_multiplier

    _opacus()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=q,
                                          steps=steps, accountant="rdp", epsilon_tolerance=0.005))


def epsilon_spent(noise: float, delta: float, q: float, steps: int) -> float:
    """ε for ``delta`` after ``steps`` DP-SGD steps at rate ``q`` (Opacus's RDP accountant)."""
    if noise <= 0:
        return math.inf
    from opacus.accountants import RDPAccountant

    _opacus()
    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=noise, sample_rate=q)
    with warnings.catch_warnings():  # "optimal order is the largest alpha": a looser, still valid ε
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta))


class DPSGD(TrainingDefense):
    """Differentially private local training (per-sample clipping + Gaussian noise) via Opacus.

    Args:
        clip: per-sample L2 clipping bound ``C``.
        noise: noise multiplier σ (noise std ``σ·C``); default 1.0 when ``epsilon`` is not given.
        epsilon: target ε instead of ``noise`` (the multiplier is solved for it).
        delta: δ of the (ε, δ) guarantee.
        fix_bn: replace BatchNorm by GroupNorm (Opacus's fix) instead of refusing the model.
        seed: seeds the noise and the Poisson sampling (filled in by ``build_defenses``).

    Raises:
        ConfigError: non-positive clip, negative noise, both or a non-positive epsilon, delta
            outside (0, 1); a BatchNorm model without ``fix_bn``.
        MissingDependencyError: Opacus is not installed (``pip install 'gradleak[dp]'``).
    """

    name = "dpsgd"
    takes_seed = True

    def __init__(self, *, clip: float = 1.0, noise: float | None = None, epsilon: float | None = None,
                 delta: float = 1e-5, fix_bn: bool = False, seed: int = 0) -> None:
        problems = []
        if not (isinstance(clip, (int, float)) and clip > 0 and math.isfinite(clip)):
            problems.append(f"clip must be a positive finite number, got {clip!r}")
        if noise is not None and epsilon is not None:
            problems.append("give either noise (the multiplier) or epsilon (a target), not both")
        if noise is not None and not (noise >= 0 and math.isfinite(noise)):
            problems.append(f"noise must be a finite number >= 0, got {noise!r}")
        if epsilon is not None and not (epsilon > 0 and math.isfinite(epsilon)):
            problems.append(f"epsilon must be a positive finite number, got {epsilon!r}")
        if not 0 < delta < 1:
            problems.append(f"delta must be in (0, 1), got {delta!r}")
        if problems:
            raise ConfigError("dpsgd: " + "; ".join(problems))
        _opacus()
        self.clip, self.delta, self.fix_bn = float(clip), float(delta), bool(fix_bn)
        if epsilon is not None:
            self.epsilon = float(epsilon)
        else:
            self.noise = 1.0 if noise is None else float(noise)
        self._seed = int(seed)

    def noise_multiplier(self, q: float, steps: int) -> float:
        """σ used for ``steps`` steps at rate ``q`` (given, or solved for the target ε)."""
        if hasattr(self, "epsilon"):
            return noise_for_epsilon(self.epsilon, self.delta, q, steps)
        return self.noise

    def prepare_model(self, model: nn.Module) -> nn.Module:
        from opacus.validators import ModuleValidator

        def problems(m: nn.Module) -> list[Any]:  # Opacus validates modules as trained
            return ModuleValidator.validate(copy.deepcopy(m).train(), strict=False)

        errors = problems(model)
        if not errors:
            return model
        if self.fix_bn:
            fixed = ModuleValidator.fix(copy.deepcopy(model)).train(model.training)
            errors = problems(fixed)
            if not errors:
                return fixed
        text = "; ".join(str(e) for e in errors[:3])
        raise ConfigError(
            f"dpsgd: Opacus cannot compute per-sample gradients for this model ({text}). "
            "Use a model without BatchNorm (e.g. --norm gn where the model offers it), "
            "or let Opacus replace BatchNorm by GroupNorm with --defense dpsgd:fix_bn=true"
        )

    def public_meta(self, update: ClientUpdate) -> Mapping[str, Any]:
        q, steps = sampling(update.num_examples, update.local_training
                            if update.kind == "weight_delta" else None)
        sigma = self.noise_multiplier(q, steps)
        return {"privacy": {"mechanism": "dpsgd", "epsilon": epsilon_spent(sigma, self.delta, q, steps),
                            "delta": self.delta, "noise_multiplier": sigma, "clip": self.clip,
                            "sample_rate": q, "steps": steps, "accountant": "rdp"}}

    def _run(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
             local: LocalTraining | None, seed: int) -> None:
        """DP-SGD steps; FedSGD (``local=None``) leaves the noised mean gradient in ``p.grad``."""
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        from gradleak.fl.client import make_optimizer

        if local is not None and local.prox_mu:
            raise ConfigError("dpsgd does not add FedProx's proximal term (prox_mu); train without it, or "
                              "with another defense")
        n = int(inputs.shape[0])
        q, steps = sampling(n, local)
        expected = max(1, round(q * n))
        sampler = torch.Generator().manual_seed(self._seed * 7919 + seed)
        # Opacus records activations only in training mode; layers with parameters that it
        # supports (linear, conv, GroupNorm, ...) compute the same either way, so the client's
        # chosen mode stays in force for everything else (e.g. dropout).
        modes = {m: m.training for m in model.modules()}
        for m in model.modules():
            if any(True for _ in m.parameters(recurse=False)):
                m.training = True
        wrapped = GradSampleModule(model, loss_reduction="sum")
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Full backward hook is firing")
                optimizer = DPOptimizer(
                    make_optimizer(list(model.parameters()), local) if local else
                    torch.optim.SGD(model.parameters(), lr=1.0),
                    noise_multiplier=self.noise_multiplier(q, steps), max_grad_norm=self.clip,
                    expected_batch_size=expected, loss_reduction="sum",
                    generator=torch.Generator().manual_seed(self._seed))
                for _ in range(steps):
                    idx = (torch.arange(n) if q >= 1 else
                           torch.nonzero(torch.rand(n, generator=sampler) < q).reshape(-1))
                    optimizer.zero_grad()
                    F.cross_entropy(wrapped(inputs[idx]), labels[idx], reduction="sum").backward()
                    optimizer.pre_step()
                    for p in model.parameters():  # DPOptimizer sums: turn the sum into a mean
                        p.grad = p.grad / expected
                    if local is not None:
                        optimizer.original_optimizer.step()
        finally:
            wrapped.cleanup()
            for m, mode in modes.items():
                m.training = mode

    def gradient(self, model: nn.Module, inputs: torch.Tensor,
                 labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.enable_grad():
            self._run(model, inputs, labels, None, 0)
        return {n: p.grad.detach().clone() for n, p in model.named_parameters()}

    def train(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
              local: LocalTraining, *, seed: int = 0) -> nn.Module:
        self._run(model, inputs, labels, local, seed)
        return model
