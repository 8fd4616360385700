"""``make tables``: regenerate every published results table from committed configs.

    python bench/tables/make_tables.py                      # all tables, one worker per CPU
    python bench/tables/make_tables.py --only gifd geng     # some of them
    python bench/tables/make_tables.py --render-only        # rewrite docs/results/ from the stores

Each table is a committed grid, ``bench/tables/NAME.toml``, run as a resumable sweep into
``runs/tables/NAME.sqlite`` (a killed run resumes where it stopped; stored runs are not run again),
then rendered into ``docs/results/NAME.md`` with its command, seeds, split, preset, budget,
versions, machine and wall time. Every scored batch comes from the ``attack`` split; the only
runs on ``validation`` are the ones that choose a hyper-parameter (``gifd_tune``).

Tables (in the order they run):

* ``spear_exact`` — SPEAR's exact recovery against b on attack-split batches (``docs/results/spear.md``
  is issue 19's larger SPEAR table, written by ``bench/bench_spear.py``);
* ``geng``       — Geng's label-count, wrong-label and fusion claims with geng's own counts
  (plus ``geng_swap.py``);
* ``gifd``       — radii chosen on validation (``gifd_tune.toml``), then GIFD in and out of
  distribution at the paper's and the chosen radii against IG/GGL at equal budgets;
* ``ggl_table3`` — GGL's Table 3 analogue, seven attacks at 400 evaluations each.

The README quotes only these files (``tests/test_readme_results.py`` checks it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import torch  # noqa: E402
from common import ROOT, run_grid  # noqa: E402

TABLES = ("spear_exact", "geng", "gifd", "ggl_table3")


def make(name: str, db_dir: Path, workers: int, render_only: bool) -> Path:
    """Run (unless ``render_only``) and render one table; returns the results file."""
    start = time.perf_counter()

    def grid(grid_name: str) -> Path:
        return db_dir / f"{grid_name}.sqlite" if render_only else run_grid(grid_name, db_dir, workers=workers)

    if name == "spear_exact":
        from render_geng import render_spear

        db = grid("spear_exact")
        return render_spear(db, time.perf_counter() - start)
    if name == "geng":
        import geng_swap
        from render_geng import render_geng

        db = grid("geng")
        cache = db_dir / "geng_swap.json"
        swap = json.loads(cache.read_text()) if render_only else geng_swap.run(cache)
        return render_geng(db, swap, time.perf_counter() - start)
    if name == "gifd":
        from render_gifd import check_tuned, render

        tune = grid("gifd_tune")
        check_tuned(tune, common.TABLES / "gifd.toml")
        db = grid("gifd")
        return render(tune, db, time.perf_counter() - start)
    if name == "ggl_table3":
        from render_ggl import render

        db = grid("ggl_table3")
        return render(db, time.perf_counter() - start)
    raise SystemExit(f"unknown table {name!r}; choose from {', '.join(TABLES)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=TABLES, default=list(TABLES))
    p.add_argument("--db-dir", default=str(ROOT / "runs" / "tables"), help="where the sweep stores live")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="parallel runs, one torch thread each (default: one per CPU)")
    p.add_argument("--render-only", action="store_true", help="only rewrite docs/results/ from the stores")
    args = p.parse_args()
    torch.set_num_threads(1)
    db_dir = Path(args.db_dir)
    db_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        if name in args.only:
            start = time.perf_counter()
            path = make(name, db_dir, args.workers, args.render_only)
            print(f"{name}: wrote {path.relative_to(ROOT)} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
