"""The contracts every other package shares: types, errors, registries, typed results.

Nothing in ``gradleak.core`` imports from any other part of gradleak; every other package may
import from it. Built-in registry entries are declared as ``"module:attribute"`` strings in
:mod:`gradleak.core.builtins` and imported only when first used.

Example:
    >>> from gradleak.core.registry import list_attacks
    >>> "ig" in list_attacks()
    True
"""
