"""The README quotes results only from ``docs/results/*.md`` (written by ``make tables``), and the
committed table configs keep the data contract and equal budgets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradleak.sweep import load_grid

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
MEASURED = re.compile(r"psnr|ssim|accuracy|exact|recovered|\bdb\b|evaluations|seconds", re.I)


def markdown_tables(text: str) -> list[list[str]]:
    """Every Markdown table of ``text`` as its lines (header, separator, rows)."""
    tables, current = [], []
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            current.append(line.strip())
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def numbers(text: str) -> set[str]:
    return {n.lstrip("-") for n in NUMBER.findall(text)}


def test_every_number_in_a_readme_results_table_appears_in_docs_results():
    published = "\n".join(p.read_text() for p in sorted((ROOT / "docs" / "results").glob("*.md")))
    known = numbers(published)
    missing = []
    for t in markdown_tables((ROOT / "README.md").read_text()):
        if not MEASURED.search(t[0]):  # a table of options or names, not of measurements
            continue
        for row in t[2:]:
            missing += [f"{n} in README row {row[:70]!r}" for n in sorted(numbers(row) - known)]
    assert not missing, "README numbers that no docs/results/*.md file holds:\n" + "\n".join(missing)


def test_the_check_catches_a_typed_in_number():
    readme = "| attack | PSNR (dB) |\n|---|---|\n| ig | 99.9 |\n"
    t = markdown_tables(readme)[0]
    assert MEASURED.search(t[0]) and numbers(t[2]) == {"99.9"}


@pytest.mark.parametrize("path", sorted((ROOT / "bench" / "tables").glob("*.toml")), ids=lambda p: p.stem)
def test_table_configs_score_attack_images_and_tune_on_validation(path):
    grid = load_grid(path)
    splits = {run.scenario.split for run in grid.runs}
    assert splits == ({"validation"} if path.stem.endswith("_tune") else {"attack"})
    assert all(run.scenario.labels == "own" for run in grid.runs)  # no labels handed to any attack


def budget(attack: str, o: dict) -> int:
    """The most trial-gradient evaluations a table run may spend (final scores included: the Adam
    loops score their last iterate once more, GIFD every stage's; GGL's ``evaluations`` is a cap)."""
    if attack in ("dlg", "idlg"):
        return o["steps"] * o["max_iter"]
    if attack == "ig":
        return (o["steps"] + 1) * o.get("restarts", 1)
    if attack == "gifd":
        return (o["steps"] + 1) * 3 * o["restarts"]
    return o["evaluations"]


def test_the_ggl_table_gives_every_attack_the_same_budget():
    budgets = {}
    for run in load_grid(ROOT / "bench" / "tables" / "ggl_table3.toml").runs:
        budgets[run.preset] = max(budgets.get(run.preset, 0), budget(run.scenario.attack, run.scenario.attack_options))
    assert len(budgets) == 7 and set(budgets.values()) <= {399, 400}, budgets


def test_the_gifd_table_gives_every_method_the_same_budget():
    budgets = {run.preset: budget(run.scenario.attack, run.scenario.attack_options)
               for run in load_grid(ROOT / "bench" / "tables" / "gifd.toml").runs}
    ood_mapping = 510  # the label map's latent searches (GIFD with label_map=auto, out of distribution)
    assert {p: b for p, b in budgets.items() if p.startswith("in_")} == dict.fromkeys(
        ["in_gifd_paper_radii", "in_gifd_tuned_radii", "in_ig", "in_ggl_adam", "in_ggl_cma"], 600)
    assert budgets["ood_ig"] == budgets["ood_gifd_tuned_radii"] + ood_mapping == 1110
