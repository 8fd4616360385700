"""GGL (Li et al., CVPR 2022): search a generator's latent space for an image whose gradient matches.

* :mod:`~gradleak.attacks.ggl.attack` — the attack and its CMA-ES / BO / Adam drivers;
* :mod:`~gradleak.attacks.ggl.turbo` — TuRBO-1 trust-region Bayesian optimisation;
* :mod:`~gradleak.attacks.ggl.population` — every candidate's gradient in one batched pass.
"""

from gradleak.attacks.ggl.attack import GGL

__all__ = ["GGL"]
