"""Statistics shared by the HTML, Markdown and CSV reports: groups, medians and IQRs.

Rows come from :meth:`gradleak.sweep.store.Store.runs`. PSNR may be ``inf`` (an exact
reconstruction); quantiles handle it without producing NaN.

Example:
    >>> quantiles([1.0, 2.0, 3.0, 4.0])
    (2.5, 1.75, 3.25)
    >>> quantiles([float("inf"), float("inf")])[0]
    inf
    >>> defense_label([])
    'none'
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from gradleak.sweep.store import METRICS

REPORT_METRICS = ("psnr", "ssim", "label_accuracy", "exact_fraction")
METRIC_NAMES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "label_accuracy": "label accuracy",
                "exact_fraction": "exact rate", "mse": "MSE", "lpips": "LPIPS"}
STRENGTH_KEYS = ("sigma", "std", "scale", "ratio", "prune", "amount", "rate", "epsilon", "eps",
                 "noise_multiplier", "max_norm", "clip", "bits", "levels", "alpha", "lam", "p")
SUMMARY_KEYS = ("attack", "defense")
SERIES_DIMS = ("dataset", "model", "protocol", "labels", "batch_size", "local_steps", "defense")


def _quantile(values: list[float], q: float) -> float:
    pos = (len(values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    a, b = values[lo], values[hi]
    return a if lo == hi or a == b else a + (b - a) * (pos - lo)


def quantiles(values: Iterable[float | None]) -> tuple[float, float, float]:
    """Median, first and third quartile of the finite-or-infinite values (NaN when none)."""
    clean = sorted(v for v in values if v is not None and not math.isnan(v))
    if not clean:
        return (math.nan, math.nan, math.nan)
    return (_quantile(clean, 0.5), _quantile(clean, 0.25), _quantile(clean, 0.75))


def defense_label(defenses: Iterable[str]) -> str:
    """``"none"`` or the defense specs joined by `` + ``."""
    specs = list(defenses)
    return " + ".join(specs) if specs else "none"


def defense_strength(spec: str) -> tuple[str, str, float] | None:
    """``"noise:sigma=0.01"`` → ``("noise", "sigma", 0.01)``: the defense's numeric strength option."""
    from gradleak.defenses.base import parse_spec

    try:
        name, options = parse_spec(spec)
    except ValueError:
        return None
    numeric = {k: float(v) for k, v in options.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed"}
    if not numeric:
        return None
    key = next((k for k in STRENGTH_KEYS if k in numeric), None) if len(numeric) > 1 else next(iter(numeric))
    return None if key is None else (name, key, numeric[key])


def flat_config(row: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as one flat dict (``attack_options.tv``...), ``defense`` as a label, and
    the sweep ``preset`` it came from."""
    config = dict(row.get("config") or {})
    flat: dict[str, Any] = {"preset": row["preset"]} if row.get("preset") else {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": _hashable(v) for k, v in value.items()})
        elif key == "defenses":
            flat["defense"] = defense_label(value)
        else:
            flat[key] = _hashable(value)
    return flat


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def varying(rows: list[dict[str, Any]], *, exclude: Iterable[str] = ("seed", "preset")) -> list[str]:
    """Settings that take more than one value across ``rows`` (in a stable order)."""
    values: dict[str, set[Any]] = defaultdict(set)
    order: dict[str, None] = {}
    for row in rows:
        for key, value in flat_config(row).items():
            values[key].add(value)
            order.setdefault(key)
    skip = set(exclude)
    return [k for k in order if len(values[k]) > 1 and k not in skip]


def group(rows: list[dict[str, Any]], keys: Iterable[str]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Rows grouped by the values of flat-config ``keys`` (insertion order kept)."""
    keys = list(keys)
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        flat = flat_config(row)
        out.setdefault(tuple(flat.get(k) for k in keys), []).append(row)
    return out


def summarise(rows: list[dict[str, Any]], keys: Iterable[str] = SUMMARY_KEYS,
              metrics: Iterable[str] = REPORT_METRICS) -> list[dict[str, Any]]:
    """One dict per group: the key values, ``n`` and ``METRIC`` → (median, q1, q3)."""
    keys, metrics = list(keys), list(metrics)
    table = []
    for values, members in sorted(group(rows, keys).items(), key=lambda kv: tuple(map(_sort_key, kv[0]))):
        entry: dict[str, Any] = dict(zip(keys, values, strict=True))
        entry["n"] = len(members)
        for m in metrics:
            entry[m] = quantiles(r.get(m) for r in members)
        entry["seconds"] = quantiles(r.get("seconds") for r in members)[0]
        entry["assumptions"] = group_assumptions(members)
        table.append(entry)
    return table


def group_assumptions(rows: list[dict[str, Any]]) -> list[str] | None:
    """Every assumption any of ``rows`` relied on (``detail.assumptions``), in the canonical order;
    ``None`` when no row recorded them (a store written before they were recorded)."""
    from gradleak.experiment.assumptions import ASSUMPTIONS

    recorded = [(r.get("detail") or {}).get("assumptions") for r in rows]
    if all(a is None for a in recorded):
        return None
    found = {a for names in recorded if names for a in names}
    return [a for a in ASSUMPTIONS if a in found] + sorted(found - set(ASSUMPTIONS))


def assumptions_cell(assumptions: list[str] | None) -> str:
    """A table cell: upper-bound assumptions marked ``*``, ``unrecorded`` for old stores."""
    from gradleak.experiment.assumptions import mark_assumptions

    return "unrecorded" if assumptions is None else mark_assumptions(assumptions)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: ``∞`` for inf, ``–`` for NaN/None."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def fmt_iqr(triple: tuple[float, float, float]) -> str:
    """``median [q1, q3]``."""
    med, q1, q3 = triple
    return fmt(med) if math.isnan(med) else f"{fmt(med)} [{fmt(q1)}, {fmt(q3)}]"


__all__ = ["METRICS", "METRIC_NAMES", "REPORT_METRICS", "assumptions_cell", "defense_label", "defense_strength",
           "flat_config", "fmt", "fmt_iqr", "group", "group_assumptions", "quantiles", "summarise", "varying"]
