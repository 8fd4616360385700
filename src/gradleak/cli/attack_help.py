"""``gradleak attack NAME --help`` and ``gradleak list attacks --verbose``: an attack's options,
defaults, presets and requirements, read from the attack class (:mod:`gradleak.attacks.describe`).

Example:
    $ gradleak attack ig --help
    $ gradleak list attacks --verbose
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
from typing import Any


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def format_attack(name: str, *, width: int | None = None) -> str:
    """The options, presets and requirements of one attack as plain text wrapped to ``width``."""
    from gradleak.attacks.describe import describe_attack, requirement_summary

    width = width or min(shutil.get_terminal_size((100, 20)).columns, 120)
    d = describe_attack(name)
    wrap = textwrap.TextWrapper(width=width, initial_indent="  ", subsequent_indent="      ",
                                break_long_words=False, break_on_hyphens=False)
    lines = [*textwrap.wrap(f"{name} — {d['summary']}", width=width, subsequent_indent="  "),
             *textwrap.wrap(d["paper"], width=width, subsequent_indent="  ")]
    lines += ["", "requires:"]
    if d["requires"]:
        lines += wrap.wrap(d["requires"])
    lines += [f"  {line}" for line in requirement_summary(d["capabilities"])]
    lines += ["", f"options (-p KEY=VALUE; progress counts {d['capabilities']['progress_unit']}):"]
    for key, opt in d["options"].items():
        flag = f" [also {opt['flag']}]" if opt["flag"] else ""
        head = f"{key} = {_value(opt['default'])}{flag}"
        lines += wrap.wrap(f"{head}: {opt['help']}" if opt["help"] else head)
    lines += ["", "presets:"]
    presets = d["presets"]
    for preset, options in presets.items():
        note = {"tiny": " (a seconds-long smoke run)", "paper": " (the paper's settings)"}.get(preset, "")
        text = ", ".join(f"{k}={_value(v)}" for k, v in options.items()) or "(the defaults)"
        lines += wrap.wrap(f"{preset}{note}: {text}")
    if "paper" not in presets:
        lines += wrap.wrap("(no 'paper' preset declared; the defaults and the module docstring say where "
                           "gradleak departs from the paper)")
    return "\n".join(lines)


class AttackHelp(argparse.Action):
    """``-h/--help`` of ``gradleak attack``: the usual help, plus the named attack's options."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.print_help()
        name = getattr(namespace, "attack", None)
        from gradleak.core.errors import GradleakError

        if name:
            try:
                print("\n" + format_attack(name))
            except GradleakError as err:
                print(f"\n{err}")
        else:
            from gradleak.core.registry import ATTACKS

            print(f"\nattacks: {', '.join(ATTACKS.names())}; 'gradleak attack NAME --help' shows one "
                  "attack's options, defaults, presets and requirements")
        parser.exit()
