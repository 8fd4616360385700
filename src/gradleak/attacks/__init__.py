"""Server-side attacks: one file per single-file attack, a package for SPEAR, GGL and GIFD.

Every attack subclasses :class:`~gradleak.attacks.base.Attack` and is declared in
:mod:`gradleak.core.builtins`; build one with ``gradleak.create_attack(name, **options)``.
Importing this package imports no attack.
"""

from gradleak.attacks.base import Attack

__all__ = ["Attack"]
