"""Client-side defenses, one file per defense (two for the sparsifiers and the quantisers).

Each defense owns its adaptive counterpart: :meth:`~gradleak.defenses.base.Defense.trial_transform`
returns the deterministic part an adaptive attacker copies onto its trial gradients (``None`` for
noise, DP-SGD, MixUp and aggregation); :func:`~gradleak.defenses.adaptive.adaptive_transform`
chains them in the client's order. Defenses are declared in :mod:`gradleak.core.builtins`.
"""
