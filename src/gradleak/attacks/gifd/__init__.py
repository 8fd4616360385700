"""GIFD (Fang et al., ICCV 2023): latent search, then each generator stage inside an l1 ball.

* :mod:`~gradleak.attacks.gifd.attack` — the staged search;
* :mod:`~gradleak.attacks.gifd.l1_ball` — exact projection onto the l1 ball (Duchi et al. 2008);
* :mod:`~gradleak.attacks.gifd.label_map` — which generator class stands for each task label
  (gradleak's own design, see its docstring).
"""

from gradleak.attacks.gifd.attack import GIFD

__all__ = ["GIFD"]
