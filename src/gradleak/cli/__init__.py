"""The ``gradleak`` command line: one module per command group, ``main`` in :mod:`~gradleak.cli.main`.

Example:
    >>> from gradleak.cli import main
    >>> main(["list", "attacks", "--json"])  # doctest: +SKIP
    0
"""

from gradleak.cli.attack import scenario_from_args
from gradleak.cli.main import build_parser, main
from gradleak.core.options import parse_pairs

__all__ = ["build_parser", "main", "parse_pairs", "scenario_from_args"]
