"""Label restoration from the last linear layer's gradient, and the resolver attacks call.

Every method is ``restore(model, update, *, shape) -> labels (B,)`` and is declared in
:mod:`gradleak.core.builtins` (``LABEL_METHODS``). :func:`~gradleak.labels.resolve.resolve_labels`
picks known labels or a method. The input shape is always passed explicitly.

* :mod:`~gradleak.labels.idlg` — one sample (Zhao et al. 2020);
* :mod:`~gradleak.labels.geng` — counts: Geng et al. 2021, the bias variant, Dimitrov et al. 2022;
* :mod:`~gradleak.labels.ilrg`, :mod:`~gradleak.labels.lsq`, :mod:`~gradleak.labels.yin_llg`;
* :mod:`~gradleak.labels.counts` — dummy statistics, applicability checks, rounding.
"""
