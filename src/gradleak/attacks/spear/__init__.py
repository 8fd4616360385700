"""SPEAR (Dimitrov et al., NeurIPS 2024): exact batch recovery from a Linear+ReLU layer's gradient.

* :mod:`~gradleak.attacks.spear.attack` — the attack (requirements, search loop, output);
* :mod:`~gradleak.attacks.spear.sampling` — batched kernels of sampled row subsets, sparsity filter;
* :mod:`~gradleak.attacks.spear.select` — choosing ``b`` directions by the sparsity-match score λ,
  and completing the last one or two;
* :mod:`~gradleak.attacks.spear.hybrid` — gradleak's proposals from predicted zero sets.
"""

from gradleak.attacks.spear.attack import Spear

__all__ = ["Spear"]
