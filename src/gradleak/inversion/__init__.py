"""The shared gradient-matching kit that optimisation attacks are built from.

* :mod:`~gradleak.inversion.gradients` — the observed gradient of an update; batched trial gradients;
* :mod:`~gradleak.inversion.losses` — L2 and cosine gradient distances;
* :mod:`~gradleak.inversion.priors` — total variation;
  :mod:`~gradleak.inversion.bn_prior` — BatchNorm statistics and group consistency (GradInversion);
* :mod:`~gradleak.inversion.optimize`, :mod:`~gradleak.inversion.lbfgs`,
  :mod:`~gradleak.inversion.schedules` — the Adam and L-BFGS loops and their schedules;
* :mod:`~gradleak.inversion.matching` — Inverting Gradients' loop with labels held fixed.

Nothing here knows about a particular attack, defense or label method.
"""
