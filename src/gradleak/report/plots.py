"""The report's matplotlib figures; only those the stored runs support are made.

Each plot shows the median over seeds with IQR error bars (said in every caption), one line per series (the attack, plus
any other setting that varies in the plotted runs). Figures are built with the object API
(no pyplot state), so this works in worker threads and headless machines.

- PSNR vs batch size per attack (undefended runs)
- label accuracy vs batch size (and exact rate vs batch size when any run is exact)
- PSNR vs defense strength (one figure per defense option with two or more values)
- PSNR vs local steps (FedAvg runs)

Example:
    >>> figs = make_plots([])
    >>> figs
    []
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, ScalarFormatter

from gradleak.report.stats import (
    METRIC_NAMES,
    SERIES_DIMS,
    defense_strength,
    flat_config,
    quantiles,
    varying,
)

PSNR_CAP = 100.0


def _y(row: dict[str, Any], metric: str) -> float | None:
    value = row.get(metric)
    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    return min(value, PSNR_CAP) if metric == "psnr" else value


def series_figure(title: str, xlabel: str, ylabel: str,
                  series: dict[str, dict[float, list[float]]], *, logx: bool = False) -> Figure:
    """Median with IQR error bars of each series' y values at each x."""
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for label, points in sorted(series.items()):
        xs = sorted(points)
        stats = [quantiles(points[x]) for x in xs]
        med = [s[0] for s in stats]
        err = [[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    xs_all = [x for points in series.values() for x in points]
    if xs_all and all(float(x).is_integer() for x in xs_all):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True) if not logx else FixedLocator(sorted(set(xs_all))))
        if logx:
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    return fig


def _series(rows: list[dict[str, Any]], x_of: Any, metric: str, exclude: tuple[str, ...]
            ) -> dict[str, dict[float, list[float]]]:
    dims = [d for d in varying(rows) if d in SERIES_DIMS and d not in exclude]
    out: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        x, y = x_of(row), _y(row, metric)
        if x is None or y is None:
            continue
        flat = flat_config(row)
        label = " · ".join([str(flat["attack"])] + [f"{d}={flat.get(d)}" for d in dims])
        out[label][float(x)].append(y)
    return {k: dict(v) for k, v in out.items()}


def _supported(series: dict[str, dict[float, list[float]]]) -> bool:
    return any(len(points) >= 2 for points in series.values())


def _ylabel(metric: str, rows: list[dict[str, Any]]) -> str:
    name = METRIC_NAMES[metric]
    if metric == "psnr" and any((r.get("psnr") or 0) > PSNR_CAP for r in rows):
        name += f"; exact runs at {PSNR_CAP:g}"
    return name


def make_plots(rows: list[dict[str, Any]]) -> list[tuple[str, Figure]]:
    """``(caption, figure)`` for every plot the finished runs support.

    Runs of different sweep presets are plotted separately (the preset is named in the title),
    so one experiment's settings do not clutter another's series.
    """
    presets = list(dict.fromkeys(r.get("preset") for r in rows))
    if len(presets) <= 1:
        return _plots(rows)
    figs = []
    for preset in presets:
        for caption, fig in _plots([r for r in rows if r.get("preset") == preset]):
            fig.axes[0].set_title(f"{fig.axes[0].get_title()} ({preset})")
            figs.append((caption, fig))
    return figs


def _plots(rows: list[dict[str, Any]]) -> list[tuple[str, Figure]]:
    figs: list[tuple[str, Figure]] = []
    clean = [r for r in rows if not r.get("defenses")]
    fedsgd = [r for r in clean if r.get("protocol") == "fedsgd"] or clean
    by_b = lambda r: r.get("batch_size")  # noqa: E731
    psnr_b = _series(fedsgd, by_b, "psnr", ("batch_size",))
    if _supported(psnr_b):
        figs.append(("Reconstruction quality against the client's batch size (undefended FedSGD runs).",
                     series_figure("PSNR vs batch size per attack", "batch size", _ylabel("psnr", fedsgd),
                                   psnr_b, logx=_spread(psnr_b))))
    label_b = _series(fedsgd, by_b, "label_accuracy", ("batch_size",))
    if _supported(label_b):
        figs.append(("Fraction of the batch's labels recovered (after matching).",
                     series_figure("Label accuracy vs batch size", "batch size",
                                   _ylabel("label_accuracy", fedsgd), label_b, logx=_spread(label_b))))
    exact_b = _series(fedsgd, by_b, "exact_fraction", ("batch_size",))
    if _supported(exact_b) and any((r.get("exact_fraction") or 0) > 0 for r in fedsgd):
        figs.append(("Fraction of images recovered exactly (per-image MSE below tolerance).",
                     series_figure("Exact rate vs batch size", "batch size",
                                   _ylabel("exact_fraction", fedsgd), exact_b, logx=_spread(exact_b))))
    figs += _defense_plots(rows)
    fedavg = [r for r in clean if r.get("protocol") == "fedavg"]
    steps = _series(fedavg, lambda r: r.get("local_steps"), "psnr", ("local_steps",))
    if _supported(steps):
        figs.append(("FedAvg: reconstruction quality against the client's local steps (undefended runs).",
                     series_figure("PSNR vs local steps (FedAvg)", "local steps",
                                   _ylabel("psnr", fedavg), steps, logx=_spread(steps))))
    return figs


def _defense_plots(rows: list[dict[str, Any]]) -> list[tuple[str, Figure]]:
    by_option: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    strength: dict[str, float] = {}
    for row in rows:
        if len(row.get("defenses") or []) != 1:
            continue
        found = defense_strength(row["defenses"][0])
        if found:
            by_option[found[:2]].append(row)
            strength[row["key"]] = found[2]
    figs = []
    for (name, option), members in sorted(by_option.items()):
        series = _series(members, lambda r: strength[r["key"]], "psnr", ("defense",))
        if _supported(series):
            xs = {x for pts in series.values() for x in pts}
            figs.append((f"Reconstruction quality against the {option} of defense {name!r}.",
                         series_figure(f"PSNR vs defense strength: {name}", f"{name} {option}",
                                       _ylabel("psnr", members), series,
                                       logx=min(xs) > 0 and _spread(series))))
    return figs


def _spread(series: dict[str, dict[float, list[float]]]) -> bool:
    xs = [x for pts in series.values() for x in pts]
    return bool(xs) and min(xs) > 0 and max(xs) / min(xs) >= 16


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
