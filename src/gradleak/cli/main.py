"""The ``gradleak`` command line.

Example:
    $ gradleak attack ig --dataset mnist --model convnet --batch-size 4 --steps 1000 --seed 0 --json
    $ gradleak list
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from gradleak.cli.attack import add_attack_args, cmd_attack
from gradleak.cli.check import add_check_args, cmd_check
from gradleak.cli.flower import add_parsers as add_flower_parsers
from gradleak.cli.flower import cmd_flower_demo
from gradleak.cli.listing import cmd_datasets, cmd_list
from gradleak.cli.prior import add_parsers as add_prior_parsers
from gradleak.cli.prior import cmd_prior
from gradleak.cli.sweep import add_parsers as add_sweep_parsers
from gradleak.cli.sweep import cmd_report, cmd_sweep
from gradleak.core.errors import GradleakError
from gradleak.core.paths import cache_dir
from gradleak.core.version import __version__


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage on one line and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"gradleak: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = _Parser(prog="gradleak", description="Measure data leakage from FL client updates.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_attack_args(sub.add_parser("attack", help="run one attack scenario end to end, or attack a saved update",
                                   add_help=False))
    add_check_args(sub.add_parser("check", help="which attacks and label methods apply to a model and update, "
                                  "and why not"))
    lst = sub.add_parser("list", help="registered attacks, defenses, datasets, models")
    lst.add_argument("kind", nargs="?", default="all",
                     choices=["all", "attacks", "defenses", "datasets", "models", "labels"])
    lst.add_argument("--verbose", "-v", action="store_true",
                     help="attacks: every option with its default, the presets and the requirements")
    lst.add_argument("--json", action="store_true")
    dsp = sub.add_parser("datasets", help="every dataset: shape, classes, size and where it comes from")
    dsp.add_argument("--data-dir", default=None, help="also load the user-owned datasets from this folder")
    dsp.add_argument("--json", action="store_true")
    add_sweep_parsers(sub)
    add_prior_parsers(sub)
    add_flower_parsers(sub)
    return parser


COMMANDS = {"attack": cmd_attack, "check": cmd_check, "list": cmd_list, "datasets": cmd_datasets, "sweep": cmd_sweep,
            "report": cmd_report, "prior": cmd_prior, "flower-demo": cmd_flower_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors print one line and return 2, never a traceback.

    Ctrl-C returns 130. Anything else is a bug in gradleak: one line says so, the traceback is
    saved to a file (:func:`report_crash`) and the status is 1.
    """
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except GradleakError as err:
        sys.stderr.write(f"gradleak: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("gradleak: interrupted\n")
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence: a bug, reported in one line
        return report_crash(err)


def report_crash(err: BaseException) -> int:
    """Save the traceback of an unexpected error and print one line saying where; return 1.

    The file goes to ``$GRADLEAK_CACHE/crash`` (else the temporary folder). The test suite
    replaces this function by a failure: reaching it is a bug.
    """
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    saved = None
    for folder in (cache_dir() / "crash", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(f"gradleak {__version__}, argv {sys.argv!r}\n\n{text}")
            saved = folder / name
            break
        except OSError:
            continue
    where = f"the traceback is in {saved}" if saved else "the traceback could not be saved"
    first = (str(err).strip().splitlines() or [""])[0][:200]
    sys.stderr.write(f"gradleak: internal error (a bug in gradleak, not in your input): {type(err).__name__}: "
                     f"{first}; {where} — please report it\n")
    return 1
