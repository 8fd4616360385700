"""Reports: statistics, plots the data supports, self-contained HTML, Markdown/CSV, headless Chromium."""

from __future__ import annotations

import csv
import io
import math

import pytest
import torch

from gradleak.cli import main
from gradleak.core.errors import ConfigError
from gradleak.experiment.runfolder import image_grid
from gradleak.report import write_report
from gradleak.report.html import render_html
from gradleak.report.plots import make_plots
from gradleak.report.screenshot import check_html, find_browser, screenshot
from gradleak.report.stats import defense_strength, quantiles, summarise
from gradleak.sweep.store import Store


def _png(seed: int) -> bytes:
    gen = torch.Generator().manual_seed(seed)
    buf = io.BytesIO()
    image_grid([torch.rand(2, 1, 8, 8, generator=gen), torch.rand(2, 1, 8, 8, generator=gen)]).save(buf, "PNG")
    return buf.getvalue()


def _add(store: Store, n: int, *, attack="ig", b=1, seed=0, defenses=(), protocol="fedsgd", steps=None,
         psnr=20.0, status="done"):
    config = {"attack": attack, "dataset": "digits", "model": "mlp", "batch_size": b, "seed": seed,
              "defenses": list(defenses), "protocol": protocol, "local_steps": steps, "labels": "known"}
    metrics = {"mse": 10 ** (-psnr / 10), "psnr": psnr, "ssim": min(1.0, psnr / 40), "lpips": None,
               "label_accuracy": 1.0 / b, "exact_fraction": 1.0 if math.isinf(psnr) else 0.0}
    store.record({"key": f"run{n:03d}", "preset": "t", "status": status, "config": config,
                  "metrics": metrics if status == "done" else None, "seconds": 0.5,
                  "error": "RuntimeError: synthetic failure" if status == "failed" else None,
                  "versions": {"gradleak": "0.1.0"}, "image": _png(n) if status == "done" else None})


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "results.sqlite"
    n = 0
    with Store(path) as store:
        for attack, base in (("ig", 25.0), ("dlg", 30.0)):
            for b in (1, 2, 4):
                for seed in range(3):
                    _add(store, n := n + 1, attack=attack, b=b, seed=seed, psnr=base - 4 * b + seed)
        for sigma in (0.001, 0.01, 0.1):
            for seed in range(2):
                _add(store, n := n + 1, defenses=[f"noise:sigma={sigma}"], seed=seed,
                     psnr=20 + 3 * math.log10(1 / sigma) + seed)
        for steps in (1, 4, 16):
            _add(store, n := n + 1, protocol="fedavg", steps=steps, psnr=25.0 - steps)
        _add(store, n := n + 1, attack="spear", b=2, psnr=float("inf"))
        _add(store, n := n + 1, attack="spear", b=4, psnr=float("inf"))
        _add(store, n := n + 1, attack="ig", b=8, status="failed")
    return path


def test_quantiles_and_strength():
    assert quantiles([3.0, 1.0, None, 2.0, float("nan")]) == (2.0, 1.5, 2.5)
    assert all(math.isnan(v) for v in quantiles([]))
    assert quantiles([1.0, float("inf"), float("inf")]) == (float("inf"), float("inf"), float("inf"))
    assert defense_strength("noise:sigma=0.01,kind=gaussian") == ("noise", "sigma", 0.01)
    assert defense_strength("prune:ratio=0.9,seed=3") == ("prune", "ratio", 0.9)
    assert defense_strength("soteria") is None


def test_summary_per_attack_and_defense(db):
    with Store(db, readonly=True) as store:
        table = summarise(store.runs("done"))
    by = {(e["attack"], e["defense"]): e for e in table}
    assert by[("dlg", "none")]["n"] == 9
    med, q1, q3 = by[("dlg", "none")]["psnr"]
    assert med == 23.0 and q1 < med < q3  # b ∈ {1,2,4}: 26..28, 22..24, 14..16
    assert by[("spear", "none")]["psnr"][0] == float("inf")
    assert ("ig", "noise:sigma=0.01") in by


def test_plots_the_data_supports_have_titles_and_labelled_axes(db):
    with Store(db, readonly=True) as store:
        figs = make_plots(store.runs("done"))
    titles = [fig.axes[0].get_title() for _, fig in figs]
    assert titles == ["PSNR vs batch size per attack", "Label accuracy vs batch size",
                      "Exact rate vs batch size", "PSNR vs defense strength: noise", "PSNR vs local steps (FedAvg)"]
    for _, fig in figs:
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    assert figs[3][1].axes[0].get_xlabel() == "noise sigma"


def test_no_plot_without_variation(tmp_path):
    path = tmp_path / "one.sqlite"
    with Store(path) as store:
        _add(store, 1)
        _add(store, 2, seed=1)
    with Store(path, readonly=True) as store:
        assert make_plots(store.runs("done")) == []
    assert "nothing to plot" in render_html(path)


def test_html_is_self_contained_and_complete(db, tmp_path):
    out = tmp_path / "report.html"
    write_report(db, out)
    text = out.read_text()
    problems, images = check_html(text)
    assert problems == []
    assert images == 5 + 3 * 2 + 2  # plots + best/median/worst of ig and dlg + spear's only two runs
    for needle in ("Summary per attack × defense", "PSNR (dB) median [IQR]", "Failed runs",
                   "RuntimeError: synthetic failure", "∞", "--retry-failed", "noise:sigma=0.1"):
        assert needle in text, needle


def test_report_reads_a_database_that_is_being_written(db):
    writer = Store(db)
    writer.start_sweep("g.toml", "", "local", [("run001", "t", {}), ("later", "t", {})])
    writer.conn.execute("BEGIN IMMEDIATE")  # a sweep in the middle of storing a run
    writer.conn.execute("INSERT INTO runs (key, status, config) VALUES ('later', 'done', '{}')")
    text = render_html(db)
    assert "1 planned run(s) have not finished" in text
    writer.conn.execute("ROLLBACK")
    writer.close()


def test_markdown_and_csv(db, capsys, tmp_path):
    assert main(["report", str(db), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert md.splitlines()[0].startswith("| attack | defense | runs | PSNR (dB) median | PSNR (dB) IQR")
    assert "| dlg | none | 9 | 23 | 16–26 |" in md
    assert main(["report", str(db), "-o", str(tmp_path / "t.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(rows) == 3 + 3  # ig, dlg, spear undefended + ig under 3 noise levels
    dlg = next(r for r in rows if r["attack"] == "dlg")
    assert float(dlg["PSNR (dB) median"]) == 23.0 and float(dlg["PSNR (dB) q1"]) == 16.0
    assert main(["report", str(db), "--format", "csv", "--by", "runs"]) == 0
    runs = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(runs) == 18 + 6 + 3 + 2 + 1 and {r["status"] for r in runs} == {"done", "failed"}


def test_bad_report_requests(db, tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown report format 'pdf'"):
        write_report(db, None, fmt="pdf")
    assert main(["report", str(tmp_path / "missing.sqlite"), "-o", str(tmp_path / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_report_opens_in_headless_chromium(db, tmp_path):
    if find_browser() is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    html = tmp_path / "report.html"
    write_report(db, html)
    shot = tmp_path / "report.png"
    assert screenshot(html, shot) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><img src="x.png"><script>throw new Error("boom")</script>'
                      "</body></html>")
    errors = screenshot(broken, tmp_path / "broken.png")
    assert any("refers outside" in e for e in errors) and any("Uncaught" in e for e in errors)
