"""Grids of scenarios: TOML grid files, the SQLite results store, local and Ray backends.

* :mod:`~gradleak.sweep.grid` — parse and expand a grid into planned runs (stable keys);
* :mod:`~gradleak.sweep.store` — the results database (one transaction per finished run);
* :mod:`~gradleak.sweep.backends` — where runs execute; ``run_sweep`` drives a whole grid.
"""

from gradleak.sweep.grid import Grid, PlannedRun, load_grid, parse_grid, scenario_config, scenario_hash

__all__ = ["Grid", "PlannedRun", "load_grid", "parse_grid", "scenario_config", "scenario_hash"]
