"""The error hierarchy of gradleak.

Every error a user can cause is a :class:`GradleakError` (a ``ValueError``), whose
message says what was wrong, what was expected and how to fix it. The CLI prints
it on one line and exits with status 2.

Example:
    >>> try:
    ...     raise UnknownNameError("attack", "foo", ["dlg", "ig"])
    ... except GradleakError as err:
    ...     print(err)
    unknown attack 'foo'; choose one of: dlg, ig
"""

from __future__ import annotations

from collections.abc import Iterable


class GradleakError(ValueError):
    """Base class of every error caused by the user's input or set-up."""


class UnknownNameError(GradleakError):
    """A registry name (attack, dataset, model, ...) that does not exist."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.valid)}")


class ConfigError(GradleakError):
    """A setting that is out of range or inconsistent with another setting."""


class UpdateMismatchError(GradleakError):
    """A client update whose tensors do not fit the model (names, shapes, finiteness)."""


class NotApplicableError(GradleakError):
    """An attack or method that cannot run on this model or update; lists every reason."""

    def __init__(self, what: str, reasons: list[str]) -> None:
        self.what, self.reasons = what, list(reasons)
        super().__init__(f"{what} cannot run: " + "; ".join(self.reasons))


class LimitError(ConfigError):
    """A size beyond a limit of :mod:`gradleak.core.limits` (seed, epochs, pixels, memory, runs)."""


class DataError(GradleakError):
    """A dataset file or folder that is missing or malformed."""


class OutputExistsError(GradleakError):
    """An output folder that already exists (nothing a user made is overwritten silently)."""


class OutputPathError(GradleakError):
    """An output path gradleak cannot write (under a file, read-only, a name too long)."""


class StoreBusyError(GradleakError):
    """A results database another process kept locked for longer than gradleak waits."""


class MissingDependencyError(GradleakError):
    """An optional dependency that is not installed; names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        self.package, self.extra = package, extra
        super().__init__(
            f"this feature needs the optional package {package!r}; "
            f"install it with: pip install 'gradleak[{extra}]'"
        )
